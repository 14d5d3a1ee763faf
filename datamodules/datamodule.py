"""The DataModule shared by every dataset: splits, per-split modality sampling and augmentation."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rasterio.windows import Window
from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data._utils.collate import default_collate
from torchgeo.datamodules import NonGeoDataModule

from datamodules.augmentation import JointAugmentation
from datamodules.dataset import MultimodalDataset
from datamodules.modality_sampling import (
    DrawUnit,
    ModalitySampler,
    ModalitySampling,
    check_modalities,
    draw_batch_subset,
    make_modality_sampler,
)
from datamodules.samplers import evaluation_sampler
from datamodules.stats import Stats, load_stats

ROOT_ENVIRONMENT_VARIABLE = "FUSION_DATA_ROOT"
"""Environment variable read when a DataModule is given no ``root``."""

_LIST_KEYS = ("name", "instance_masks", "boxes", "labels")


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: stack tensors, keep per-sample lists for instances and names.

    Args:
        samples: samples of one dataset (see `datamodules.dataset`).

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


class SeededDataLoader(DataLoader):
    """A DataLoader whose dataset draws its random choices from the loader's own generator.

    The modality draws and the augmentation of a
    `datamodules.dataset.MultimodalDataset` come from ``dataset.generator``. Every pass
    over the data seeds it from this loader's ``generator``: in this process without workers,
    in each worker (from the worker's seed, which the loader draws from the same generator)
    with them. Loading then never touches torch's global generator, and the loader's generator
    alone fixes the samples, with or without workers.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Create the loader (arguments of ``DataLoader``; ``worker_init_fn`` is set here)."""
        super().__init__(*args, **{**kwargs, "worker_init_fn": seed_worker_dataset})

    def __iter__(self) -> Iterator[Any]:
        """Seed the dataset's generator (without workers) and iterate."""
        if self.num_workers == 0:
            seed = int(torch.randint(2**62, (), generator=self.generator))
            self.dataset.generator = torch.Generator().manual_seed(seed)
        return super().__iter__()


def seed_worker_dataset(worker_id: int) -> None:
    """Give the worker's copy of the dataset a generator seeded with the worker's seed."""
    info = get_worker_info()
    if info is not None and hasattr(info.dataset, "generator"):
        info.dataset.generator = torch.Generator().manual_seed(info.seed)


def check_disjoint_splits(datasets: Mapping[str, MultimodalDataset]) -> None:
    """Refuse splits that share a tile: the same file with intersecting windows.

    Args:
        datasets: split name -> dataset.

    Raises:
        ValueError: naming the first pair of tiles of two splits that overlap.
    """
    # file -> split -> (tile index, window) of every tile reading the file
    tiles: dict[Path, dict[str, list[tuple[int, Window | None]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for split, dataset in datasets.items():
        for index in range(len(dataset)):
            paths, window = dataset.tile_footprint(index)
            for path in paths:
                tiles[path][split].append((index, window))
    for path, by_split in tiles.items():
        splits = list(by_split)
        for i, split in enumerate(splits):
            for other_split in splits[i + 1 :]:
                for index, window in by_split[split]:
                    for other_index, other_window in by_split[other_split]:
                        if _windows_intersect(window, other_window):
                            raise ValueError(
                                f"Splits {split!r} and {other_split!r} overlap: tile "
                                f"{datasets[split].tile_name(index)!r} and tile "
                                f"{datasets[other_split].tile_name(other_index)!r} share "
                                f"{path}. Each tile and region must belong to one split only."
                            )


def _windows_intersect(first: Window | None, second: Window | None) -> bool:
    """Whether two windows of one file share a pixel (None: the whole file)."""
    if first is None or second is None:
        return True
    return (
        first.col_off < second.col_off + second.width
        and second.col_off < first.col_off + first.width
        and first.row_off < second.row_off + second.height
        and second.row_off < first.row_off + first.height
    )


class MultimodalDataModule(NonGeoDataModule):
    """TorchGeo DataModule for a `datamodules.dataset.MultimodalDataset`.

    The training split shows random modality subsets (``train_modalities``, default uniform
    over the non-empty subsets, paper Sec. III-F), drawn once per batch (``train_modalities_per:
    batch``, the paper's IV-B-5: every sample of a step shows the same subset, so nothing is
    padded) or once per sample, and is augmented; validation and test show
    ``eval_modalities`` (default all) without augmentation. Use
    `set_eval_modalities` to evaluate another subset with the same datasets. An
    evaluation subset is never swapped for other modalities: a tile where it has no data gives
    a sample with ``present`` all False, to be left out of that subset's score and counted.
    Splits that share a tile or region are refused when they are set up.

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
        train_modalities_per: ``"batch"``: one draw of ``train_modalities`` per training
            batch (the tiles are loaded with every modality they have, and the draw is applied
            in `on_after_batch_transfer`; a tile with none of the drawn modalities gets a
            draw of its own, counted in the batch's ``subset_fallback``); ``"sample"``: one
            draw per sample, in the dataset.
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
        train_modalities_per: DrawUnit = "batch",
        **dataset_kwargs: Any,
    ) -> None:
        if root is None:
            root = os.environ.get(ROOT_ENVIRONMENT_VARIABLE)
            if root is None:
                raise ValueError(
                    f"No data root: pass root (--data.root on the command line) or set "
                    f"{ROOT_ENVIRONMENT_VARIABLE}"
                )
        if not Path(root).is_dir():
            raise FileNotFoundError(f"data root {root} is not a folder")
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
        if train_modalities_per not in ("batch", "sample"):
            raise ValueError(
                f"train_modalities_per must be 'batch' or 'sample', got {train_modalities_per!r}"
            )
        self.modalities = modalities
        self.train_modalities = train_modalities
        self.eval_modalities = eval_modalities
        self.train_modalities_per = train_modalities_per
        make_modality_sampler(train_modalities, modalities)  # refuse a bad rule early
        size = (crop_size, crop_size) if crop_size is not None else None
        self.train_augmentation = JointAugmentation(size, crop_scale) if augment else None
        self.collate_fn = collate_samples
        self.aug = None  # samples are normalized and augmented in the dataset, per sample
        self.train_generator = torch.Generator()
        self.subset_generator = torch.Generator()

    @property
    def subset_rule(self) -> ModalitySampler:
        """The training split's modality sampling rule (from ``train_modalities``)."""
        return make_modality_sampler(self.train_modalities, self.modalities)

    @property
    def draws_per_batch(self) -> bool:
        """Whether the training subsets are drawn per batch (a random rule, ``per: batch``)."""
        return self.train_modalities_per == "batch" and self.subset_rule.random

    @property
    def modality_specs(self) -> dict[str, int | tuple[str, int]]:
        """Modality name -> channels or ("categorical", n), for the backbone."""
        info = self.dataset_class.all_modalities
        return {m: info[m].spec for m in self.modalities}

    @property
    def normalization_stats(self) -> Stats:
        """Per-modality ``mean`` and ``std`` the datasets normalize with (``x = (v - mean) / std``).

        The ``stats`` given to the DataModule, else the dataset class's defaults; a model that
        needs physical units (a threshold in dB) inverts the normalization with them.
        """
        stats = self.kwargs.get("stats")
        return load_stats(self.dataset_class.default_stats if stats is None else stats)

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
        """Create the datasets a stage needs ('fit', 'validate', 'test' or 'predict').

        Raises:
            ValueError: if two of the splits set up so far share a tile or region.
        """
        if stage == "fit":  # each process of a distributed run draws its own subsets
            seed = torch.initial_seed() + self._process_rank()
            self.train_generator.manual_seed(seed)
            self.subset_generator.manual_seed(seed + 1)
            self.train_dataset = self.dataset_class(
                split="train",
                # per batch: load what the tiles have; the subset is drawn for the whole batch
                modality_sampling="all" if self.draws_per_batch else self.train_modalities,
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
        splits = {
            split: dataset
            for split in ("train", "val", "test")
            if (dataset := getattr(self, f"{split}_dataset", None)) is not None
        }
        check_disjoint_splits(splits)

    def set_eval_modalities(self, spec: ModalitySampling) -> None:
        """Show another modality subset in validation and test, e.g. ``["s1", "dem"]``."""
        self.eval_modalities = spec
        for dataset in (self.val_dataset, self.test_dataset):
            if dataset is not None:
                dataset.modality_sampling = spec

    def _dataloader_factory(self, split: str) -> DataLoader[dict[str, Any]]:
        """DataLoader of one split.

        The training loader draws its shuffle, its workers' seeds and, through
        `SeededDataLoader`, the samples' modality subsets and augmentation from
        `train_generator` (seeded from the run's seed plus the process's rank, saved in
        checkpoints), with or without workers; its workers are not persistent, so that a
        resumed run draws the same samples as an uninterrupted one. Evaluation loaders have a
        generator of their own. Neither touches torch's global generator, which the tasks use
        for token masks.

        In a distributed run (``torch.distributed`` initialised, more than one process), the
        evaluation loaders ('val', 'test', 'predict') split the tiles among the processes
        without padding (`datamodules.samplers.evaluation_sampler`), so that the
        metrics, synchronised over the processes, count every tile once. Lightning keeps a
        sampler that is already a ``DistributedSampler`` and gives the training loader its own.
        """
        dataset = self._valid_attribute(f"{split}_dataset", "dataset")
        train = split == "train"
        # Lightning replaces no DistributedSampler (DataConnector._requires_distributed_sampler)
        sampler = None if train else evaluation_sampler(dataset)
        return SeededDataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=train and len(dataset) > self.batch_size,
            pin_memory=torch.cuda.is_available(),
            generator=self.train_generator if train else torch.Generator().manual_seed(0),
        )

    def state_dict(self) -> dict[str, Any]:
        """The training loader's random state, for exact resumption from checkpoints."""
        return {
            "train_generator": self.train_generator.get_state(),
            "subset_generator": self.subset_generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training loader's random state.

        A checkpoint holds the state of rank 0; the other processes of a distributed run
        branch off it with their rank, so that they keep drawing other subsets than rank 0.
        """
        if "train_generator" in state_dict:
            self.train_generator.set_state(state_dict["train_generator"])
            if "subset_generator" in state_dict:
                self.subset_generator.set_state(state_dict["subset_generator"])
            rank = self._process_rank()
            if rank:
                seed = int(torch.randint(2**62, (), generator=self.train_generator))
                self.train_generator.manual_seed(seed + rank)
                self.subset_generator.manual_seed(seed + rank + 1)

    def _process_rank(self) -> int:
        """The global rank of this process in a distributed run; 0 without a trainer."""
        trainer = getattr(self, "trainer", None)
        return trainer.global_rank if trainer is not None else 0

    def draw_batch_modalities(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Show one random modality subset in a whole training batch (``per: batch``).

        The draw comes from `subset_generator` (seeded like the training loader, saved in
        checkpoints). Modalities left out become absent as the sample contract says: ``present``
        and ``valid`` False, zeros (the no-data id for class maps) in their rasters.

        Args:
            batch: a training batch loaded with every modality its tiles have.

        Returns:
            The batch with ``present``, ``valid`` and the dropped rasters changed, and
            ``subset_fallback`` ``bool [B]``: True for tiles that had none of the drawn
            modalities and got a draw of their own.
        """
        present = batch["present"]
        shown, fallback = draw_batch_subset(
            self.subset_rule, present.cpu(), self.subset_generator, batch.get("name")
        )
        shown, fallback = shown.to(present.device), fallback.to(present.device)
        batch = dict(batch)
        info = self.dataset_class.all_modalities
        for column, name in enumerate(self.modalities):
            dropped = present[:, column] & ~shown[:, column]
            if bool(dropped.any()):
                fill = info[name].nodata_id if info[name].categorical else 0
                rows = dropped.view(-1, *([1] * (batch[name].ndim - 1)))
                batch[name] = batch[name].masked_fill(rows, fill)
        batch["present"] = shown
        if "valid" in batch:
            batch["valid"] = batch["valid"] & shown[:, :, None, None]
        batch["subset_fallback"] = fallback
        return batch

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Draw the training batch's modality subset (``per: batch``); other batches unchanged.

        (TorchGeo's default would normalize an ``image`` key instead.)
        """
        trainer = getattr(self, "trainer", None)
        if self.draws_per_batch and trainer is not None and trainer.training:
            return self.draw_batch_modalities(batch)
        return batch
