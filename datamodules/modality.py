"""What a dataset knows about each of its modalities: bands, units, classes, no-data value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    """What a dataset knows about one of its modalities.

    Attributes:
        bands: number of channels the loader produces.
        description: bands and units, for humans.
        classes: number of classes for a categorical map, None for continuous data.
        rgb: channels shown as red, green, blue by ``plot`` (one channel: grey).
        file_bands: bands in the file when the loader reads only some (see ``read_bands``).
        read_bands: 1-based bands of the file to read, None for all.
        nodata: no-data value of the layout, used when a file carries no no-data tag.
    """

    bands: int
    description: str
    classes: int | None = None
    rgb: tuple[int, ...] = (0,)
    file_bands: int | None = None
    read_bands: tuple[int, ...] | None = None
    nodata: float | None = None

    @property
    def categorical(self) -> bool:
        """Whether the modality holds class ids."""
        return self.classes is not None

    @property
    def nodata_id(self) -> int | None:
        """Class id of pixels without data in a class map: ``classes``, one past the last."""
        return self.classes

    @property
    def spec(self) -> int | tuple[str, int]:
        """The form `fusion.MaskedFusionViT` takes: channels or ("categorical", n)."""
        return ("categorical", self.classes) if self.classes is not None else self.bands
