"""Classical water detection by thresholds: the baseline the fusion models are judged against.

Open water is dark in Sentinel-1 cross-polarised backscatter (VH, dB) and bright in the
normalized difference water index of Sentinel-2, NDWI = (B3 - B8) / (B3 + B8) (McFeeters 1996).
`ThresholdTask` turns the DataModule's normalized rasters back into those units (``v = x * std +
mean``) and calls a pixel water where

- only ``s1`` is shown: VH < t_VH;
- only ``s2`` is shown: NDWI > t_NDWI;
- both are shown: either of the two (the union of their votes).

A modality gives no vote on a pixel where it holds no data (``valid`` False); a pixel where no
shown modality holds data is called not water. The thresholds come from one of three rules:

- ``fixed``: the given values (-20 dB, NDWI 0);
- ``otsu``: Otsu's threshold of each tile's own histogram of valid pixels, per index
  (`kornia.filters.otsu_threshold`); a tile with too few valid pixels, or a single value, falls
  back to the fixed value;
- ``fitted``: ``fusion fit`` (one epoch is enough) passes once over the training split, gathers
  histograms of VH and of NDWI over the labelled water and not-water pixels, and keeps for each
  index the threshold with the highest water IoU on them (buffers, saved in the checkpoint).

The task runs through ``fusion fit`` and ``fusion evaluate`` like
`fusion.tasks.SegmentationTask` in its binary semantic case (the same metric names, tables and
trivial predictor: `fusion.tasks.evaluation_hooks`), so its scores sit in the same tables. It
has no parameters: nothing is learned by gradient, and Lightning runs it without an optimizer
(manual optimization, no steps).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from kornia.filters import otsu_threshold
from torch import Tensor, nn

from fusion.heads.targets import IGNORE_INDEX
from fusion.modality import ModalityConfig, parse_modalities
from fusion.tasks.batches import split_batch
from fusion.tasks.evaluation_hooks import EvaluationHooks

ThresholdRule = Literal["fixed", "otsu", "fitted"]
"""Where the thresholds come from: given, per tile by Otsu, or fitted on the training split."""

HISTOGRAM_BINS = 1200
"""Bins of the training histograms of the ``fitted`` rule (0.05 dB of VH, 0.0017 of NDWI)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WaterIndex:
    """A per-pixel quantity of one modality that a single threshold splits into water and land.

    Attributes:
        modality: The modality it is computed from.
        key: Its name in logged metric names.
        title: Its name and unit, for logs.
        water_above: True when water lies above the threshold (NDWI), False below (VH dB).
        span: Range of its training histogram; values beyond it count in the end bins.
    """

    modality: str
    key: str
    title: str
    water_above: bool
    span: tuple[float, float]

    def is_water(self, values: Tensor, thresholds: Tensor) -> Tensor:
        """``bool`` map of the pixels on the water side of ``thresholds`` (broadcast)."""
        return values > thresholds if self.water_above else values < thresholds


VH = WaterIndex("s1", "vh_db", "VH dB", water_above=False, span=(-50.0, 10.0))
NDWI = WaterIndex("s2", "ndwi", "NDWI", water_above=True, span=(-1.0, 1.0))


def tile_otsu_thresholds(
    values: Tensor, shown: Tensor, index: WaterIndex, fallback: float, min_pixels: int
) -> Tensor:
    """Otsu's threshold of each tile, computed on its shown pixels only.

    Otsu's split is taken on the index oriented so that water lies above it, so that ``index.
    is_water(values, threshold)`` is exactly Otsu's foreground.

    Args:
        values: ``float [B, H, W]`` index values (VH dB, NDWI).
        shown: ``bool [B, H, W]``, the pixels that vote (present and valid).
        index: The index ``values`` hold.
        fallback: Threshold of a tile with fewer than ``min_pixels`` shown pixels, or whose
            shown pixels all hold one value.
        min_pixels: Fewest shown pixels for which a tile gets its own threshold.

    Returns:
        ``float [B]`` thresholds, in the index's units.
    """
    sign = 1.0 if index.water_above else -1.0
    thresholds = values.new_full((len(values),), fallback)
    for tile, (tile_values, tile_shown) in enumerate(zip(values, shown, strict=True)):
        pixels = sign * tile_values[tile_shown]  # [N], water above
        if pixels.numel() < min_pixels or bool(pixels.min() == pixels.max()):
            continue
        _, threshold = otsu_threshold(pixels)
        thresholds[tile] = sign * threshold[0]
    return thresholds


def best_iou_threshold(
    water: Tensor, land: Tensor, edges: Tensor, water_above: bool
) -> tuple[float, float] | None:
    """The bin edge whose split of a labelled histogram gives the highest water IoU.

    Where several neighbouring edges give the same best IoU (an empty gap between the classes),
    the middle of that run is taken.

    Args:
        water: ``[N]`` counts of water pixels per bin.
        land: ``[N]`` counts of not-water pixels per bin.
        edges: ``[N + 1]`` bin edges, increasing.
        water_above: Whether water is called above the threshold (else below).

    Returns:
        ``(threshold, iou)``, or None when the histogram holds no water pixel.
    """
    water, land = water.double(), land.double()
    total_water = water.sum()
    if total_water == 0:
        return None
    if not water_above:  # walk from the high end, so that "called water" is a suffix again
        water, land, edges = water.flip(0), land.flip(0), edges.flip(0)
    zero = water.new_zeros(1)
    # Called water at candidate k: the bins k..N-1; k = N calls nothing water.
    true_positives = torch.cat([water.flip(0).cumsum(0).flip(0), zero])  # [N + 1]
    false_positives = torch.cat([land.flip(0).cumsum(0).flip(0), zero])  # [N + 1]
    iou = true_positives / (total_water + false_positives)  # TP / (TP + FP + FN)
    first = int(iou.argmax())
    at_best = (iou[first:] >= iou[first]).long()
    last = first + int(at_best.cumprod(0).sum()) - 1
    return float((edges[first] + edges[last]) / 2), float(iou[first])


class ThresholdTask(EvaluationHooks):
    """Water where VH is low or NDWI is high: a thresholding baseline with the tasks' interface.

    Args:
        modalities: name -> channels, set from the DataModule's ``modality_specs`` by the
            command line; ``s1`` (VV, VH dB) and ``s2`` (B2, B3, B4, B8 reflectance x 10000) are
            used, other modalities are ignored.
        num_classes: 2 (not water, water): a threshold separates two classes.
        rule: ``"fixed"``, ``"otsu"`` (per tile) or ``"fitted"`` (on the training split).
        vh_threshold_db: VH threshold, dB (water below); the fallback of ``otsu`` and the
            starting value of ``fitted``.
        ndwi_threshold: NDWI threshold (water above); likewise.
        s1_channel: channel of VH in ``s1``.
        green_channel: channel of the green band (B3) in ``s2``.
        nir_channel: channel of the near-infrared band (B8) in ``s2``.
        otsu_min_pixels: fewest valid pixels of a tile for its own Otsu threshold.
        stats: ``{modality: {"mean": [...], "std": [...]}}`` the inputs were normalized with
            (physical units); None takes the DataModule's ``normalization_stats`` when a run
            starts. Kept as buffers, so a checkpoint carries the statistics it was run with.

    Raises:
        ValueError: For an unknown rule, ``num_classes`` other than 2, no ``s1`` or ``s2``
            modality, or a channel outside its modality.
    """

    def __init__(
        self,
        modalities: dict[str, ModalityConfig],
        num_classes: int = 2,
        rule: ThresholdRule = "fixed",
        vh_threshold_db: float = -20.0,
        ndwi_threshold: float = 0.0,
        s1_channel: int = 1,
        green_channel: int = 1,
        nir_channel: int = 3,
        otsu_min_pixels: int = 100,
        stats: dict[str, dict[str, list[float]]] | None = None,
    ) -> None:
        super().__init__()
        if rule not in ("fixed", "otsu", "fitted"):
            raise ValueError(f"rule must be 'fixed', 'otsu' or 'fitted', got {rule!r}")
        if num_classes != 2:
            raise ValueError(f"a threshold separates 2 classes, got num_classes={num_classes}")
        self.save_hyperparameters()
        self.automatic_optimization = False  # no parameters, no optimizer, no steps
        specs = {spec.name: spec for spec in parse_modalities(modalities)}
        self.modality_names = tuple(specs)
        self.indices = tuple(index for index in (VH, NDWI) if index.modality in specs)
        if not self.indices:
            raise ValueError(f"ThresholdTask needs an s1 or s2 modality, got {list(specs)}")
        channels = {"s1": (s1_channel,), "s2": (green_channel, nir_channel)}
        for index in self.indices:
            spec = specs[index.modality]
            if spec.is_categorical or not all(0 <= c < spec.channels for c in channels[spec.name]):
                raise ValueError(
                    f"{index.title} needs channels {channels[spec.name]} of {spec.name}, "
                    f"which has {spec.channels} continuous channels"
                )
            # Normalization statistics of the modality, NaN until known: [C] each.
            self.register_buffer(f"mean_{spec.name}", torch.full((spec.channels,), torch.nan))
            self.register_buffer(f"std_{spec.name}", torch.full((spec.channels,), torch.nan))
        if stats is not None:
            self.set_stats(stats)
        defaults = {VH: vh_threshold_db, NDWI: ndwi_threshold}
        self.fixed_thresholds = tuple(defaults[index] for index in self.indices)
        # The rule "fitted"'s thresholds, one per index (the fixed ones until fitted).
        self.register_buffer("fitted_thresholds", torch.tensor(self.fixed_thresholds))
        # Training pixels per index, label (0 not water, 1 water) and bin; not saved.
        counts = torch.zeros(len(self.indices), 2, HISTOGRAM_BINS, dtype=torch.int64)
        self.register_buffer("histograms", counts, persistent=False)
        self.metrics = nn.ModuleDict({stage: self.make_metrics() for stage in ("val", "test")})

    # -- physical units -----------------------------------------------------------------------
    def set_stats(self, stats: Mapping[str, Mapping[str, list[float]]]) -> None:
        """Copy the normalization statistics of the used modalities into the buffers.

        Raises:
            ValueError: If a used modality has no statistics, or a wrong number of channels.
        """
        for index in self.indices:
            name = index.modality
            mean, std = getattr(self, f"mean_{name}"), getattr(self, f"std_{name}")
            entry = stats.get(name)
            if entry is None or len(entry["mean"]) != len(mean) or len(entry["std"]) != len(std):
                raise ValueError(
                    f"normalization statistics of {name!r} need {len(mean)} channels, got {entry}"
                )
            mean.copy_(torch.as_tensor(entry["mean"], dtype=mean.dtype))
            std.copy_(torch.as_tensor(entry["std"], dtype=std.dtype))

    def index_values(self, index: WaterIndex, raster: Tensor) -> tuple[Tensor, Tensor]:
        """An index in physical units from a normalized raster.

        Args:
            index: `VH` or `NDWI`.
            raster: ``float [B, C, H, W]``, normalized, of ``index.modality``.

        Returns:
            ``float [B, H, W]`` values (VH dB, NDWI) and ``bool [B, H, W]``: where the index is
            defined (NDWI needs B3 + B8 > 0).

        Raises:
            RuntimeError: If the normalization statistics are unknown.
        """
        name = index.modality
        mean, std = getattr(self, f"mean_{name}"), getattr(self, f"std_{name}")
        if bool(mean.isnan().any()):
            raise RuntimeError(
                f"ThresholdTask has no normalization statistics of {name!r}: pass stats, or "
                "run it with a DataModule that has normalization_stats"
            )
        physical = raster.float() * std[:, None, None] + mean[:, None, None]  # [B, C, H, W]
        if index == VH:
            vh = physical[:, self.hparams.s1_channel]
            return vh, torch.ones_like(vh, dtype=torch.bool)
        green = physical[:, self.hparams.green_channel]
        nir = physical[:, self.hparams.nir_channel]
        total = green + nir
        defined = total > 0
        return (green - nir) / torch.where(defined, total, 1.0), defined

    def index_pixels(self, batch: Mapping[str, Any]) -> Iterator[tuple[int, Tensor, Tensor]]:
        """For each index whose modality some sample shows: position, values and voters.

        Yields:
            The index's position in `indices`, its values ``float [B, H, W]`` and ``bool [B, H,
            W]``, the pixels that vote: the modality present in the sample, its pixel valid
            (``valid``) and the index defined there.
        """
        inputs, present = split_batch(batch, self.modality_names)
        valid = batch.get("valid")  # [B, M, H, W] or absent
        for position, index in enumerate(self.indices):
            name = index.modality
            if name not in inputs:
                continue
            values, shown = self.index_values(index, inputs[name])
            shown = shown & present[name][:, None, None]
            if valid is not None:
                shown = shown & valid[:, self.modality_names.index(name)]
            yield position, values, shown

    # -- the rule -----------------------------------------------------------------------------
    def thresholds(self, position: int, values: Tensor, shown: Tensor) -> Tensor:
        """``float [B]`` thresholds of index ``position`` for each tile of a batch."""
        rule = self.hparams.rule
        if rule == "otsu":
            fallback = self.fixed_thresholds[position]
            index = self.indices[position]
            return tile_otsu_thresholds(
                values, shown, index, fallback, self.hparams.otsu_min_pixels
            )
        if rule == "fitted":
            return self.fitted_thresholds[position].expand(len(values)).to(values.dtype)
        return values.new_full((len(values),), self.fixed_thresholds[position])

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        """Class map of a batch of the sample contract.

        Args:
            batch: ``s1`` / ``s2`` ``float [B, C, H, W]`` (normalized), ``present`` ``bool [B,
                M]`` and ``valid`` ``bool [B, M, H, W]``.

        Returns:
            ``int64 [B, H, W]``: 1 where a shown modality calls the pixel water, else 0.
        """
        reference = batch[self.modality_names[0]]  # [B, C, H, W]
        water = torch.zeros_like(reference[:, 0], dtype=torch.bool)  # [B, H, W]
        for position, values, shown in self.index_pixels(batch):
            thresholds = self.thresholds(position, values, shown)[:, None, None]
            water |= self.indices[position].is_water(values, thresholds) & shown
        return water.long()

    # -- fitting the thresholds on the training split ----------------------------------------
    def on_train_epoch_start(self) -> None:
        """Start the epoch's histograms afresh."""
        self.histograms.zero_()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Add the batch's labelled, voting pixels to the histograms (rule ``fitted`` only)."""
        if self.hparams.rule != "fitted":
            return
        labels = batch["mask"]  # [B, H, W]
        for position, values, shown in self.index_pixels(batch):
            pixels = shown & (labels != IGNORE_INDEX)
            low, high = self.indices[position].span
            bins = ((values[pixels] - low) / (high - low) * HISTOGRAM_BINS).long()
            bins = bins.clamp(0, HISTOGRAM_BINS - 1) + HISTOGRAM_BINS * labels[pixels].long()
            counts = torch.bincount(bins, minlength=2 * HISTOGRAM_BINS)
            self.histograms[position] += counts.view(2, HISTOGRAM_BINS)

    def fit_thresholds(self, histograms: Tensor) -> None:
        """Keep, per index, the threshold of the best water IoU on labelled histograms.

        An index without labelled water pixels keeps its threshold.

        Args:
            histograms: ``int64 [I, 2, HISTOGRAM_BINS]`` pixel counts per index of `indices`,
                label (0 not water, 1 water) and bin, as `training_step` gathers them.
        """
        for position, index in enumerate(self.indices):
            edges = torch.linspace(*index.span, HISTOGRAM_BINS + 1, dtype=torch.float64)
            land, water = histograms[position].cpu()
            best = best_iou_threshold(water, land, edges, index.water_above)
            if best is None:
                log.warning("No labelled water pixel of %s: its threshold stays", index.title)
                continue
            self.fitted_thresholds[position] = best[0]
            log.info("Fitted %s threshold %.3f (training water IoU %.3f)", index.title, *best)

    def fit_on_training_pixels(self) -> None:
        """Fit the thresholds (rule ``fitted``) on the training pixels counted so far.

        The histograms are summed over the processes of a distributed run; nothing happens
        before any pixel is counted (e.g. in the sanity check, or outside ``fit``).
        """
        if self.hparams.rule != "fitted":
            return
        histograms = self.trainer.strategy.reduce(self.histograms.clone(), reduce_op="sum")
        if bool(histograms.any()):
            self.fit_thresholds(histograms)

    def on_validation_epoch_start(self) -> None:
        """Fit the thresholds before validating on them (validation ends a training epoch)."""
        self.fit_on_training_pixels()

    def on_train_epoch_end(self) -> None:
        """Fit the thresholds on the whole epoch and log them (``train/threshold_<index>``)."""
        self.fit_on_training_pixels()
        if self.hparams.rule == "fitted":
            for index, value in zip(self.indices, self.fitted_thresholds, strict=True):
                self.log(f"train/threshold_{index.key}", value)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """No optimizer: the thresholds are counted or given, not learned by gradient."""
        return []

    # -- evaluation (the hooks and the metrics are `EvaluationHooks`') ----------------------
    def score_batch(self, batch: dict[str, Any], stage: str) -> None:
        """Add a validation or test batch's class maps to the stage's metrics."""
        classes = self(batch)
        for metric in self.metrics[stage].values():
            metric.update(classes, batch["mask"])

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``name`` (tile names) and ``semantic`` (``int64 [B, H, W]``) of a batch."""
        return {"name": batch.get("name"), "semantic": self(batch)}

    def setup(self, stage: str) -> None:
        """Take the DataModule's normalization statistics, unless ``stats`` was given.

        The data at hand were normalized with them, so they replace statistics loaded from a
        checkpoint.
        """
        if self.hparams.stats is None:
            stats = getattr(self.trainer.datamodule, "normalization_stats", None)
            if stats is not None:
                self.set_stats(stats)
