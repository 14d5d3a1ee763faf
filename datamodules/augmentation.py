"""Geometric augmentation shared by every modality and target (albumentations).

One random transform per sample moves all modalities, the semantic mask and the instance masks
together: flips, 90-degree rotations and a random resized crop. Nothing photometric: DEM, DSM
and SAR values keep their physical meaning. Continuous modalities are resampled bilinearly;
categorical maps and masks with ``cv2.INTER_NEAREST_EXACT``, the nearest neighbour that samples
at pixel centres like the bilinear images do (plain ``INTER_NEAREST`` shifts labels by up to
half an output pixel against the images). Which modalities are categorical is told by the
dataset on every call, and checked against the arrays' dtypes, so class ids are never blended.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import albumentations as A
import cv2
import numpy as np
import torch


class JointAugmentation:
    """Flips, 90-degree rotations and a random resized crop applied to a whole sample.

    Args:
        size: output ``(height, width)`` of the random resized crop, or None for no crop.
        crop_scale: range of the crop area relative to the input.
    """

    def __init__(
        self, size: tuple[int, int] | None = None, crop_scale: tuple[float, float] = (0.5, 1.0)
    ) -> None:
        transforms: list[A.BasicTransform] = [A.HorizontalFlip(), A.VerticalFlip()]
        transforms.append(A.RandomRotate90())
        if size is not None:
            transforms.append(
                A.RandomResizedCrop(
                    size=size,
                    scale=crop_scale,
                    ratio=(0.75, 4 / 3),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST_EXACT,
                )
            )
        self._transforms = transforms
        self._composed: dict[tuple[tuple[str, bool], ...], A.Compose] = {}

    def _compose(self, kinds: tuple[tuple[str, bool], ...]) -> A.Compose:
        """One ``A.Compose`` per set of (modality name, categorical), built once and cached."""
        if kinds not in self._composed:
            targets = {name: "mask" if categorical else "image" for name, categorical in kinds}
            self._composed[kinds] = A.Compose(self._transforms, additional_targets=targets)
        return self._composed[kinds]

    def __call__(
        self,
        modalities: Mapping[str, np.ndarray],
        mask: np.ndarray,
        instance_masks: Sequence[np.ndarray] = (),
        categorical: Collection[str] = (),
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
        """Transform one sample.

        Args:
            modalities: name -> ``[H, W, C]`` float array for continuous modalities, ``[H, W]``
                integer class ids for categorical ones. All share ``H, W``.
            mask: semantic mask ``[H, W]``.
            instance_masks: per-instance binary masks, each ``[H, W]``.
            categorical: names of the categorical modalities (the dataset's own list).
            generator: torch generator the transform is drawn from (None: torch's global one).

        Returns:
            The transformed modalities, mask and instance masks, in the same layouts.

        Raises:
            ValueError: if a categorical modality is not an integer ``[H, W]`` map, or a
                continuous one is not a float ``[H, W, C]`` array (it would be resampled wrongly).
        """
        kinds = tuple((name, name in categorical) for name in modalities)
        for name, is_categorical in kinds:
            _check_kind(name, modalities[name], is_categorical)
        # albumentations reads the sample size from ``image``; a one-byte-per-pixel placeholder
        # keeps every real modality under its own name with its own interpolation.
        placeholder = np.zeros(mask.shape[:2] + (1,), dtype=np.uint8)
        compose = self._compose(kinds)
        # albumentations keeps its own generators; seeding them from torch's makes the
        # augmentation follow the run's seed (and each DataLoader worker's own seed). Each
        # transform gets its own seed: one shared seed would make the flips decide alike.
        seeds = torch.randint(2**31 - 1, (len(compose.transforms),), generator=generator)
        for transform, seed in zip(compose.transforms, seeds.tolist(), strict=True):
            transform.set_random_seed(seed)
        out = compose(image=placeholder, mask=mask, masks=list(instance_masks), **modalities)
        return {n: out[n] for n in modalities}, out["mask"], list(out["masks"])


def _check_kind(name: str, data: np.ndarray, categorical: bool) -> None:
    """Raise unless ``data`` has the layout and dtype of its kind of modality."""
    if categorical and (data.ndim != 2 or not np.issubdtype(data.dtype, np.integer)):
        raise ValueError(
            f"Categorical modality {name!r} must be integer class ids [H, W], got "
            f"{data.dtype} {list(data.shape)}"
        )
    if not categorical and (data.ndim != 3 or not np.issubdtype(data.dtype, np.floating)):
        raise ValueError(
            f"Continuous modality {name!r} must be a float [H, W, C] array, got {data.dtype} "
            f"{list(data.shape)}; class maps must be named as categorical"
        )
