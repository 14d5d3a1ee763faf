from pathlib import Path

from datamodules import DFC2023, Quadruplets


def test_plot_quadruplet_with_absent_modality(quadruplets_root: Path, tmp_path: Path) -> None:
    ds = Quadruplets(quadruplets_root, modality_sampling=["s1", "dnw"])
    sample = ds[0]
    sample["prediction"] = sample["mask"]
    figure = ds.plot(sample, suptitle="tile")
    assert len(figure.axes) == 6
    assert [t.get_text() for t in figure.axes[1].texts] == ["absent"]
    figure.savefig(tmp_path / "quad.png")
    assert (tmp_path / "quad.png").stat().st_size > 1000


def test_plot_dfc2023_instances(dfc2023_root: Path, tmp_path: Path) -> None:
    ds = DFC2023(dfc2023_root, image_size=None)
    figure = ds.plot(ds[2])
    assert len(figure.axes) == 4
    figure.savefig(tmp_path / "dfc.png")
