"""Random modality combinations (paper Sec. III-F, IV-B-5): which modalities a sample shows.

During training the subset is drawn afresh for every batch (`draw_batch_subset`, the
paper's "random modality combinations at each iteration", the default) or for every sample each
time it is loaded (the DataModule's ``train_modalities_per``). Evaluation fixes one subset, so
that one dataset object can be evaluated on each of the ``2^M - 1`` non-empty subsets in turn.

A tile may lack a modality (no data over the whole tile). A random rule is then redrawn until
its draw keeps a modality with data, and the modalities without data are dropped from it: for
``"uniform"`` this is uniform over the non-empty subsets of the modalities the tile has. A fixed
subset is never changed (see `datamodules.dataset.MultimodalDataset`).

A sampling rule is given as a small value that fits in a YAML file:

- ``"uniform"``: uniform over the ``2^M - 1`` non-empty subsets (the paper's strategy);
- ``"all"``: every modality, always;
- a float ``p``: each modality is dropped independently with probability ``p`` (a draw that
  drops everything is redrawn);
- a mapping ``{name: p}``: per-modality drop probabilities (missing names: 0);
- a list of names: that fixed subset.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Literal

import torch

ModalitySampling = float | str | Mapping[str, float] | Sequence[str]
"""What `make_modality_sampler` accepts.

``float`` comes first: the command line (jsonargparse) takes the first type of the union that
parses, so ``--data.init_args.train_modalities=0.5`` (as a W&B sweep agent writes it) gives
the drop probability 0.5, where ``str`` first gave the unknown rule ``'0.5'``.
"""

DrawUnit = Literal["batch", "sample"]
"""What one random draw of the training subset covers: a whole batch, or one sample."""


def check_modalities(requested: Sequence[str] | None, known: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of modality names against the ones a dataset has.

    Args:
        requested: modality names, or None for all of ``known``.
        known: the dataset's modalities, in their canonical order.

    Returns:
        The requested names as a tuple, in the order given.

    Raises:
        ValueError: if the list is empty, repeats a name or names an unknown modality.
    """
    if requested is None:
        return tuple(known)
    if isinstance(requested, str):
        requested = [requested]
    requested = tuple(requested)
    if not requested:
        raise ValueError(f"The modality set is empty; choose at least one of {list(known)}")
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise ValueError(f"Unknown modality name(s) {unknown}; this dataset has {list(known)}")
    if len(set(requested)) != len(requested):
        raise ValueError(f"Modality names repeat in {list(requested)}")
    return requested


def all_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``modalities``, largest first, in the given order.

    Args:
        modalities: modality names.

    Returns:
        The ``2^M - 1`` subsets, e.g. for ``("s1", "s2")``: ``[("s1", "s2"), ("s1",), ("s2",)]``.
    """
    subsets = []
    for size in range(len(modalities), 0, -1):
        subsets.extend(itertools.combinations(modalities, size))
    return subsets


class ModalitySampler:
    """Draws which of a dataset's modalities one sample shows.

    Subclasses implement `sample`. Randomness comes from the generator passed to it (the
    DataModule gives each dataset one seeded from its own), else torch's global generator.

    Attributes:
        random: whether draws vary (and may be redrawn when they hold no data on a tile).
    """

    random: bool = True

    def __init__(self, modalities: Sequence[str]) -> None:
        """Create a sampler over ``modalities`` (the dataset's modality order)."""
        self.modalities = tuple(modalities)

    def sample(self, generator: torch.Generator | None = None) -> tuple[bool, ...]:
        """Draw one subset.

        Args:
            generator: torch generator to draw from (None: torch's global one).

        Returns:
            One flag per modality, in `modalities` order; at least one is True.
        """
        raise NotImplementedError


class UniformSubsets(ModalitySampler):
    """Uniform over the ``2^M - 1`` non-empty subsets (paper Sec. III-F)."""

    def sample(self, generator: torch.Generator | None = None) -> tuple[bool, ...]:  # noqa: D102
        code = int(torch.randint(1, 2 ** len(self.modalities), (), generator=generator).item())
        return tuple(bool(code >> i & 1) for i in range(len(self.modalities)))


class IndependentDrop(ModalitySampler):
    """Each modality is dropped independently; a draw that drops all modalities is redrawn."""

    def __init__(self, modalities: Sequence[str], drop_probability: Mapping[str, float]) -> None:
        """Create the sampler.

        Args:
            modalities: the dataset's modality names.
            drop_probability: probability in [0, 1) that each modality is dropped (missing: 0).

        Raises:
            ValueError: for an unknown name or a probability outside [0, 1).
        """
        super().__init__(modalities)
        check_modalities(list(drop_probability) or None, modalities)
        for name, p in drop_probability.items():
            if not 0.0 <= p < 1.0:
                raise ValueError(f"Drop probability of {name!r} must be in [0, 1), got {p}")
        self.keep = torch.tensor([1.0 - drop_probability.get(m, 0.0) for m in modalities])

    def sample(self, generator: torch.Generator | None = None) -> tuple[bool, ...]:  # noqa: D102
        while True:
            flags = torch.rand(len(self.modalities), generator=generator) < self.keep
            if flags.any():
                return tuple(bool(f) for f in flags)


class FixedSubset(ModalitySampler):
    """Always the same subset (evaluation, or training on complete data)."""

    random = False

    def __init__(self, modalities: Sequence[str], subset: Sequence[str]) -> None:
        """Create the sampler; ``subset`` must be a non-empty list of known names."""
        super().__init__(modalities)
        self.subset = check_modalities(subset, modalities)
        self._flags = tuple(m in self.subset for m in self.modalities)

    def sample(self, generator: torch.Generator | None = None) -> tuple[bool, ...]:  # noqa: D102
        return self._flags


def make_modality_sampler(spec: ModalitySampling, modalities: Sequence[str]) -> ModalitySampler:
    """Build a sampler from its YAML-friendly description (see the module docstring).

    Args:
        spec: ``"uniform"``, ``"all"``, a drop probability, a mapping of drop probabilities, or
            a list of modality names.
        modalities: the dataset's modality names.

    Returns:
        The sampler.

    Raises:
        ValueError: for an unknown rule or modality name.
    """
    if isinstance(spec, ModalitySampler):
        return spec
    if isinstance(spec, str):
        if spec == "uniform":
            return UniformSubsets(modalities)
        if spec == "all":
            return FixedSubset(modalities, modalities)
        if spec in modalities:
            return FixedSubset(modalities, [spec])
        raise ValueError(
            f"Unknown modality sampling {spec!r}: use 'uniform', 'all', a drop probability, "
            f"or a list of modality names from {list(modalities)}"
        )
    if isinstance(spec, int | float):
        return IndependentDrop(modalities, dict.fromkeys(modalities, float(spec)))
    if isinstance(spec, Mapping):
        return IndependentDrop(modalities, {k: float(v) for k, v in spec.items()})
    return FixedSubset(modalities, list(spec))


def draw_batch_subset(
    sampler: ModalitySampler,
    present: torch.Tensor,
    generator: torch.Generator | None = None,
    names: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One modality subset for a whole batch (the paper's "random combination per iteration").

    The batch was loaded with every modality that has data on its tiles (``present``). One
    draw of ``sampler`` then decides what the whole batch shows: ``present & draw``. A sample
    whose tile has data in none of the drawn modalities cannot show that subset; it falls back
    to a draw of its own, redrawn until it keeps a modality with data (so ``"uniform"`` stays
    uniform over the subsets the tile has), and is flagged in the returned ``fallback``.

    Args:
        sampler: the training rule (random, e.g. `UniformSubsets`).
        present: ``bool [B, M]``, the modalities with data on each tile.
        generator: torch generator of the draws (None: torch's global one).
        names: tile names, for the error message.

    Returns:
        ``shown`` ``bool [B, M]`` (a subset of ``present``, never empty) and ``fallback``
        ``bool [B]``, True for the samples that could not show the batch's subset.

    Raises:
        ValueError: if a tile has no modality with data at all.
    """
    empty = ~present.any(dim=1)
    if bool(empty.any()):
        row = int(empty.nonzero()[0])
        name = repr(names[row]) if names is not None else f"number {row} of the batch"
        raise ValueError(f"Tile {name}: every modality is no data")
    flags = torch.tensor(sampler.sample(generator), dtype=torch.bool, device=present.device)
    shown = present & flags
    fallback = ~shown.any(dim=1)
    for row in fallback.nonzero().flatten().tolist():
        while True:
            own = torch.tensor(sampler.sample(generator), dtype=torch.bool, device=present.device)
            if bool((own & present[row]).any()):
                shown[row] = own & present[row]
                break
    return shown, fallback
