import numpy as np
import pytest
import torch

from datamodules.augmentation import JointAugmentation


def test_same_image_as_every_modality_stays_equal() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((40, 40, 1)).astype(np.float32)
    classes = (image[..., 0] * 5).astype(np.uint8)
    augment = JointAugmentation((24, 24))
    for _ in range(20):
        modalities = {"s1": np.repeat(image, 2, axis=2), "dem": image.copy(), "dnw": classes.copy()}
        out, mask, instances = augment(
            modalities, classes.copy(), [classes == 1, classes == 3], categorical=["dnw"]
        )
        assert out["s1"].shape == (24, 24, 2) and out["dem"].shape == (24, 24, 1)
        # Equal up to float rounding of the interpolation (a shifted crop would differ by ~0.3).
        np.testing.assert_allclose(out["s1"][..., 0], out["dem"][..., 0], atol=1e-5)
        np.testing.assert_allclose(out["s1"][..., 1], out["dem"][..., 0], atol=1e-5)
        # Class maps and masks move with the images and stay integer-valued (nearest).
        np.testing.assert_array_equal(out["dnw"], mask)
        assert out["dnw"].dtype == np.uint8
        np.testing.assert_array_equal(instances[0], mask == 1)
        np.testing.assert_array_equal(instances[1], mask == 3)


@pytest.mark.parametrize("size", [128, 256])
def test_labels_stay_aligned_with_bilinear_images(size: int) -> None:
    # The image holds its column coordinate, the label the same rounded: a label resampled at
    # other points than the image (plain INTER_NEAREST) shows as a mean offset (~0.8 at 128 px).
    columns = np.tile(np.arange(256, dtype=np.float32), (256, 1))
    augment = JointAugmentation((size, size), crop_scale=(0.3, 1.0))
    torch.manual_seed(0)
    offsets = []
    for _ in range(20):
        out, mask, _ = augment(
            {"x": columns[..., None], "c": columns.astype(np.uint8)},
            columns.astype(np.uint8),
            categorical=["c"],
        )
        image = out["x"][..., 0]
        # Flips and rotations move both alike; measure along the axis the coordinate runs on.
        offsets.append(float((mask.astype(np.float32) - image)[2:-2, 2:-2].mean()))
        np.testing.assert_array_equal(out["c"], mask)
    assert abs(np.mean(offsets)) < 0.05 and max(abs(o) for o in offsets) < 0.1


def test_class_map_not_named_categorical_is_refused() -> None:
    classes = np.tile(np.array([0, 8], dtype=np.uint8), (8, 4))  # a 0/8 checkerboard of columns
    augment = JointAugmentation((6, 6))
    with pytest.raises(ValueError, match="'dnw'.*categorical"):
        augment({"dnw": classes}, np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="Categorical modality 'dem'"):
        augment({"dem": np.zeros((8, 8, 1), np.float32)}, classes, categorical=["dem"])


def test_transform_is_geometric_only() -> None:
    # A permutation of pixels (flips/rotations without crop) keeps the value histogram.
    rng = np.random.default_rng(1)
    sar = rng.normal(-12, 4, (16, 16, 1)).astype(np.float32)
    augment = JointAugmentation(None)
    torch.manual_seed(0)
    out, _, _ = augment({"sar": sar}, np.zeros((16, 16), np.uint8))
    np.testing.assert_array_equal(np.sort(out["sar"].ravel()), np.sort(sar.ravel()))


def test_transforms_differ_between_calls() -> None:
    image = np.arange(64, dtype=np.float32).reshape(8, 8, 1)
    augment = JointAugmentation(None)
    results = {
        augment({"x": image}, np.zeros((8, 8), np.uint8))[0]["x"].tobytes() for _ in range(40)
    }
    assert len(results) == 8  # all 8 dihedral transforms occur


def test_augmentation_follows_torch_seed_or_its_generator() -> None:
    image = np.random.default_rng(2).random((32, 32, 1)).astype(np.float32)
    augment = JointAugmentation((16, 16))
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(augment({"x": image}, np.zeros((32, 32), np.uint8))[0]["x"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    state = torch.get_rng_state()
    drawn = [
        augment(
            {"x": image}, np.zeros((32, 32), np.uint8), generator=torch.Generator().manual_seed(7)
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(drawn[0][0]["x"], drawn[1][0]["x"])
    assert torch.equal(state, torch.get_rng_state())
