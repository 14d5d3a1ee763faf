"""The DataModule shared by every dataset: splits, per-split modality sampling and augmentation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate
from torchgeo.datamodules import NonGeoDataModule

from datamodules.augmentation import JointAugmentation
from datamodules.dataset import MultimodalDataset
from datamodules.modality_sampling import ModalitySampling, check_modalities

ROOT_ENVIRONMENT_VARIABLE = "FUSION_DATA_ROOT"
"""Environment variable read when a DataModule is given no ``root``."""

_LIST_KEYS = ("name", "instance_masks", "boxes", "labels")


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: stack tensors, keep per-sample lists for instances and names.

    Args:
        samples: samples of one dataset (see :mod:`datamodules.dataset`).

    Returns:
        ``<modality>``: ``[B, C, H, W]``; ``present``: ``[B, M]``; ``mask``: ``[B, H, W]``;
        ``name`` and, for instance datasets, ``instance_masks``/``boxes``/``labels`` as lists
        of length B (instance counts differ between samples).
    """
    batch = default_collate([{k: v for k, v in s.items() if k not in _LIST_KEYS} for s in samples])
    for key in _LIST_KEYS:
        if key in samples[0]:
            batch[key] = [s[key] for s in samples]
    return batch


class MultimodalDataModule(NonGeoDataModule):
    """TorchGeo DataModule for a :class:`~datamodules.dataset.MultimodalDataset`.

    The training split draws a modality subset per sample (``train_modalities``, default uniform
    over the non-empty subsets, paper Sec. III-F) and is augmented; validation and test show
    ``eval_modalities`` (default all) without augmentation. Use
    :meth:`set_eval_modalities` to evaluate another subset with the same datasets.

    Args:
        dataset_class: the dataset class.
        root: dataset folder; None reads the ``FUSION_DATA_ROOT`` environment variable.
        modalities: modalities to use (default: all of the dataset's).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: resize tiles to this size (None: native).
        train_modalities: modality sampling rule of the training split.
        eval_modalities: modality sampling rule of validation and test.
        augment: augment the training split.
        crop_size: output size of the training random resized crop (None: no crop).
        crop_scale: area range of the random resized crop.
        stats: normalization statistics (mapping or JSON path), None for the defaults.
        **dataset_kwargs: further arguments of ``dataset_class``.
    """

    def __init__(
        self,
        dataset_class: type[MultimodalDataset],
        root: str | Path | None = None,
        modalities: Sequence[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        image_size: int | None = None,
        train_modalities: ModalitySampling = "uniform",
        eval_modalities: ModalitySampling = "all",
        augment: bool = True,
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        stats: str | Path | dict[str, Any] | None = None,
        **dataset_kwargs: Any,
    ) -> None:
        if root is None:
            root = os.environ.get(ROOT_ENVIRONMENT_VARIABLE)
            if root is None:
                raise ValueError(
                    f"No data root: pass root (--data.root on the command line) or set "
                    f"{ROOT_ENVIRONMENT_VARIABLE}"
                )
        modalities = check_modalities(modalities, tuple(dataset_class.all_modalities))
        super().__init__(
            dataset_class,
            batch_size,
            num_workers,
            root=root,
            modalities=modalities,
            image_size=image_size,
            stats=stats,
            **dataset_kwargs,
        )
        self.modalities = modalities
        self.train_modalities = train_modalities
        self.eval_modalities = eval_modalities
        categorical = [m for m in modalities if dataset_class.all_modalities[m].categorical]
        size = (crop_size, crop_size) if crop_size is not None else None
        self.train_augmentation = (
            JointAugmentation(size, crop_scale, categorical) if augment else None
        )
        self.collate_fn = collate_samples
        self.aug = None  # samples are normalized and augmented in the dataset, per sample
        self.train_generator = torch.Generator()

    @property
    def modality_specs(self) -> dict[str, int | tuple[str, int]]:
        """Modality name -> channels or ("categorical", n), for the backbone."""
        info = self.dataset_class.all_modalities
        return {m: info[m].spec for m in self.modalities}

    @property
    def display_channels(self) -> dict[str, tuple[int, ...]]:
        """Modality name -> channels shown as RGB (or grey) in figures."""
        info = self.dataset_class.all_modalities
        return {m: info[m].rgb for m in self.modalities}

    @property
    def classes(self) -> tuple[str, ...]:
        """Names of the semantic classes."""
        return self.dataset_class.classes

    def setup(self, stage: str) -> None:
        """Create the datasets a stage needs ('fit', 'validate', 'test' or 'predict')."""
        if stage == "fit":
            self.train_generator.manual_seed(torch.initial_seed())
            self.train_dataset = self.dataset_class(
                split="train",
                modality_sampling=self.train_modalities,
                augmentation=self.train_augmentation,
                **self.kwargs,
            )
        if stage in ("fit", "validate"):
            self.val_dataset = self.dataset_class(
                split="val", modality_sampling=self.eval_modalities, **self.kwargs
            )
        if stage in ("test", "predict"):
            self.test_dataset = self.dataset_class(
                split="test", modality_sampling=self.eval_modalities, **self.kwargs
            )
            self.predict_dataset = self.test_dataset

    def set_eval_modalities(self, spec: ModalitySampling) -> None:
        """Show another modality subset in validation and test, e.g. ``["s1", "dem"]``."""
        self.eval_modalities = spec
        for dataset in (self.val_dataset, self.test_dataset):
            if dataset is not None:
                dataset.modality_sampling = spec

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Any]]:
        """DataLoader of one split.

        The training loader draws its shuffle and its workers' seeds from
        :attr:`train_generator` (seeded from the run's seed, saved in checkpoints), and its
        workers are not persistent, so that a resumed run draws the same samples as an
        uninterrupted one. Evaluation loaders have a generator of their own. Neither touches
        torch's global generator, which the tasks use for token masks.
        """
        dataset = self._valid_attribute(f"{split}_dataset", "dataset")
        train = split == "train"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=train and len(dataset) > self.batch_size,
            pin_memory=torch.cuda.is_available(),
            generator=self.train_generator if train else torch.Generator().manual_seed(0),
        )

    def state_dict(self) -> dict[str, Any]:
        """The training loader's random state, for exact resumption from checkpoints."""
        return {"train_generator": self.train_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training loader's random state."""
        if "train_generator" in state_dict:
            self.train_generator.set_state(state_dict["train_generator"])

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Return the batch unchanged (TorchGeo's default would normalize an ``image`` key)."""
        return batch
