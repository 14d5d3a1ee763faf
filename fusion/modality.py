"""What the backbone knows about each input modality: its name, channels and kind."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

ModalityKind = Literal["continuous", "categorical"]


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality of the backbone.

    Args:
        name: Key of the modality in the input dict, e.g. ``"s2"``.
        channels: Number of input channels of a continuous modality (e.g. 4 for Sentinel-2 RGBN).
            A categorical modality always has one channel of class ids.
        kind: ``"continuous"`` for float rasters [B, C, H, W]; ``"categorical"`` for integer
            class-id maps [B, H, W] or [B, 1, H, W] such as the Dynamic World label band.
        num_classes: Number of classes of a categorical modality (ids 0..num_classes-1).
    """

    name: str
    channels: int = 1
    kind: ModalityKind = "continuous"
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("continuous", "categorical"):
            raise ValueError(
                f"modality {self.name!r}: kind must be 'continuous' or 'categorical', "
                f"got {self.kind!r}"
            )
        if self.channels < 1:
            raise ValueError(f"modality {self.name!r}: channels must be >= 1, got {self.channels}")
        if self.kind == "categorical":
            if self.num_classes is None or self.num_classes < 1:
                raise ValueError(
                    f"categorical modality {self.name!r} needs num_classes >= 1, "
                    f"got {self.num_classes}"
                )
            if self.channels != 1:
                raise ValueError(
                    f"categorical modality {self.name!r} has one channel of class ids, "
                    f"got channels={self.channels}"
                )
        elif self.num_classes is not None:
            raise ValueError(f"continuous modality {self.name!r} cannot have num_classes")

    @property
    def is_categorical(self) -> bool:
        """Whether the modality is a map of integer class ids."""
        return self.kind == "categorical"


ModalityConfig = int | tuple[str, int] | list | ModalitySpec


def parse_modality(name: str, config: ModalityConfig) -> ModalitySpec:
    """Turns one entry of the backbone's ``modalities`` argument into a `ModalitySpec`.

    Args:
        name: The modality's key.
        config: Channel count (continuous), ``("categorical", num_classes)`` (a list works too,
            as YAML gives), or a `ModalitySpec` whose name equals ``name``.

    Returns:
        The parsed spec.

    Raises:
        ValueError: If the config has none of the accepted forms or names another modality.
    """
    if isinstance(config, ModalitySpec):
        if config.name != name:
            raise ValueError(f"modality key {name!r} holds a ModalitySpec named {config.name!r}")
        return config
    if isinstance(config, int) and not isinstance(config, bool):
        return ModalitySpec(name, channels=config)
    if (
        isinstance(config, (tuple, list))
        and len(config) == 2
        and config[0] == "categorical"
        and isinstance(config[1], int)
    ):
        return ModalitySpec(name, kind="categorical", num_classes=config[1])
    raise ValueError(
        f"modality {name!r}: expected a channel count, ('categorical', num_classes) or a "
        f"ModalitySpec, got {config!r}"
    )


def parse_modalities(
    modalities: Mapping[str, ModalityConfig] | Sequence[ModalitySpec],
) -> tuple[ModalitySpec, ...]:
    """Parses the backbone's ``modalities`` argument, keeping its order.

    Args:
        modalities: Mapping name -> channels | ("categorical", n) | ModalitySpec, or a sequence
            of `ModalitySpec`.

    Returns:
        One spec per modality, in the given order.

    Raises:
        ValueError: If there are no modalities, a name repeats or an entry is malformed.
    """
    if isinstance(modalities, Mapping):
        specs = tuple(parse_modality(name, config) for name, config in modalities.items())
    else:
        specs = tuple(modalities)
        if not all(isinstance(spec, ModalitySpec) for spec in specs):
            raise ValueError("a sequence of modalities must hold ModalitySpec objects")
    if not specs:
        raise ValueError("the backbone needs at least one modality")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"modality names must be unique, got {names}")
    return specs
