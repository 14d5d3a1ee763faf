"""Geometric augmentation shared by every modality and target (albumentations).

One random transform per sample moves all modalities, the semantic mask and the instance masks
together: flips, 90-degree rotations and a random resized crop. Nothing photometric: DEM, DSM
and SAR values keep their physical meaning. Continuous modalities are resampled bilinearly;
categorical maps and masks with nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import albumentations as A
import numpy as np
import torch


class JointAugmentation:
    """Flips, 90-degree rotations and a random resized crop applied to a whole sample.

    Args:
        size: output ``(height, width)`` of the random resized crop, or None for no crop.
        crop_scale: range of the crop area relative to the input.
        categorical: names of modalities holding class ids (resampled nearest-neighbour).
    """

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        categorical: Sequence[str] = (),
    ) -> None:
        transforms: list[A.BasicTransform] = [A.HorizontalFlip(), A.VerticalFlip()]
        transforms.append(A.RandomRotate90())
        if size is not None:
            transforms.append(A.RandomResizedCrop(size=size, scale=crop_scale, ratio=(0.75, 4 / 3)))
        self.categorical = frozenset(categorical)
        self._transforms = transforms
        self._composed: dict[tuple[str, ...], A.Compose] = {}

    def _compose(self, names: tuple[str, ...]) -> A.Compose:
        """One ``A.Compose`` per set of modality names, built once and cached."""
        if names not in self._composed:
            targets = {n: "mask" if n in self.categorical else "image" for n in names}
            self._composed[names] = A.Compose(self._transforms, additional_targets=targets)
        return self._composed[names]

    def __call__(
        self,
        modalities: Mapping[str, np.ndarray],
        mask: np.ndarray,
        instance_masks: Sequence[np.ndarray] = (),
    ) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
        """Transform one sample.

        Args:
            modalities: name -> ``[H, W, C]`` array for continuous modalities, ``[H, W]`` for
                categorical ones. All share ``H, W``.
            mask: semantic mask ``[H, W]``.
            instance_masks: per-instance binary masks, each ``[H, W]``.

        Returns:
            The transformed modalities, mask and instance masks, in the same layouts.
        """
        # albumentations reads the sample size from ``image``; a one-byte-per-pixel placeholder
        # keeps every real modality under its own name with its own interpolation.
        placeholder = np.zeros(mask.shape[:2] + (1,), dtype=np.uint8)
        compose = self._compose(tuple(modalities))
        # albumentations keeps its own generators; seeding them from torch's makes the
        # augmentation follow the run's seed (and each DataLoader worker's own seed). Each
        # transform gets its own seed: one shared seed would make the flips decide alike.
        seeds = torch.randint(2**31 - 1, (len(compose.transforms),)).tolist()
        for transform, seed in zip(compose.transforms, seeds, strict=True):
            transform.set_random_seed(seed)
        out = compose(image=placeholder, mask=mask, masks=list(instance_masks), **modalities)
        return {n: out[n] for n in modalities}, out["mask"], list(out["masks"])
