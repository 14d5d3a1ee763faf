import pytest

from fusion.modality import ModalitySpec, parse_modalities


def test_parse_forms() -> None:
    specs = parse_modalities({"s1": 2, "dnw": ("categorical", 9), "map": ["categorical", 3]})
    assert specs == (
        ModalitySpec("s1", channels=2),
        ModalitySpec("dnw", kind="categorical", num_classes=9),
        ModalitySpec("map", kind="categorical", num_classes=3),
    )
    assert [spec.is_categorical for spec in specs] == [False, True, True]
    spec = ModalitySpec("dem")
    assert parse_modalities({"dem": spec}) == (spec,)
    assert parse_modalities([spec]) == (spec,)


@pytest.mark.parametrize(
    ("modalities", "message"),
    [
        ({}, "at least one modality"),
        ({"s1": "two"}, "expected a channel count"),
        ({"s1": ("categorical",)}, "expected a channel count"),
        ({"s1": ModalitySpec("s2")}, "holds a ModalitySpec named 's2'"),
        ({"s1": 0}, "channels must be >= 1"),
        ({"dnw": ("categorical", 0)}, "needs num_classes >= 1"),
        ([ModalitySpec("a"), ModalitySpec("a")], "must be unique"),
    ],
)
def test_parse_errors(modalities, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_modalities(modalities)


def test_spec_checks() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        ModalitySpec("x", kind="ordinal")
    with pytest.raises(ValueError, match="cannot have num_classes"):
        ModalitySpec("x", num_classes=3)
    with pytest.raises(ValueError, match="one channel of class ids"):
        ModalitySpec("x", channels=2, kind="categorical", num_classes=3)
