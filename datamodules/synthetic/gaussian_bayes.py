"""A per-pixel Bayes classifier over named feature groups, for comparing modality subsets.

Continuous groups (reflectances, backscatter, heights) get one full-covariance Gaussian per
*subclass*; categorical groups (a class map such as Dynamic World) a smoothed frequency table per
subclass, assumed independent of the continuous features given the subclass. Subclasses are fine
labels (e.g. the 27 UrbanAtlas codes) that map onto the target classes (the 7 merged classes): a
class's likelihood is the sum over its subclasses, a mixture that copes with classes made of very
different surfaces. Since the marginal of a Gaussian is a sub-block of its mean and covariance,
one fit serves every subset of groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

_RIDGE = 1e-3


@dataclass
class GaussianBayes:
    """Gaussian / categorical Bayes classifier over feature groups and subclasses.

    Attributes:
        subclass_to_class: ``[S]`` target class of each subclass.
        categories: number of categories of each categorical group, by name; other groups are
            continuous.
        log_prior: ``[S]`` subclass log-priors, set by `fit`.
        columns: continuous group -> its columns in the stacked feature matrix.
        means: ``[S, F]`` subclass means of the stacked continuous features.
        covariances: ``[S, F, F]`` subclass covariances.
        tables: categorical group -> ``[S, C]`` log-probabilities of each category.
    """

    subclass_to_class: np.ndarray
    categories: Mapping[str, int] = field(default_factory=dict)
    log_prior: np.ndarray | None = None
    columns: dict[str, slice] = field(default_factory=dict)
    means: np.ndarray | None = None
    covariances: np.ndarray | None = None
    tables: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_subclasses(self) -> int:
        """Number of subclasses."""
        return len(self.subclass_to_class)

    def fit(self, features: Mapping[str, np.ndarray], subclasses: np.ndarray) -> GaussianBayes:
        """Estimate priors, Gaussians and frequency tables.

        Args:
            features: group -> ``[N, F]`` continuous values or ``[N]`` category ids.
            subclasses: ``[N]`` subclass of each sample, in ``0..S-1``.

        Returns:
            The fitted classifier (self).
        """
        count = self.num_subclasses
        sizes = np.bincount(subclasses, minlength=count).astype(np.float64)
        self.log_prior = np.where(sizes > 0, np.log(np.maximum(sizes, 1) / sizes.sum()), -np.inf)
        continuous = [name for name in features if name not in self.categories]
        stacked = self._stack(features, continuous, fit=True)
        width = stacked.shape[1]
        self.means = np.zeros((count, width))
        self.covariances = np.tile(np.eye(width), (count, 1, 1))
        for subclass in np.flatnonzero(sizes > width):
            members = stacked[subclasses == subclass]
            self.means[subclass] = members.mean(axis=0)
            covariance = np.cov(members, rowvar=False).reshape(width, width)
            self.covariances[subclass] = covariance + _RIDGE * np.diag(np.diag(covariance) + 1e-6)
        for name in self.categories:
            joint = np.ones((count, self.categories[name]))
            np.add.at(joint, (subclasses, features[name].astype(np.int64)), 1)
            self.tables[name] = np.log(joint / joint.sum(axis=1, keepdims=True))
        return self

    def predict(self, features: Mapping[str, np.ndarray], groups: Sequence[str]) -> np.ndarray:
        """Most probable target class of each sample, using only the given groups.

        Args:
            features: group -> values, as for `fit`.
            groups: the groups to use.

        Returns:
            ``[N]`` predicted target classes.

        Raises:
            RuntimeError: if called before `fit`.
        """
        if self.log_prior is None or self.means is None or self.covariances is None:
            raise RuntimeError("GaussianBayes.predict called before fit")
        samples = len(next(iter(features.values())))
        scores = np.tile(self.log_prior, (samples, 1))
        for name in groups:
            if name in self.tables:
                scores += self.tables[name][:, features[name].astype(np.int64)].T
        continuous = [name for name in groups if name in self.columns]
        if continuous:
            picked = np.concatenate(
                [np.arange(self.columns[n].start, self.columns[n].stop) for n in continuous]
            )
            values = self._stack(features, continuous, fit=False)
            for subclass in np.flatnonzero(np.isfinite(self.log_prior)):
                scores[:, subclass] += _gaussian_log_density(
                    values,
                    self.means[subclass, picked],
                    self.covariances[subclass][np.ix_(picked, picked)],
                )
        classes = np.unique(self.subclass_to_class)
        class_scores = np.stack(
            [logsumexp(scores[:, self.subclass_to_class == c], axis=1) for c in classes], axis=1
        )
        return classes[class_scores.argmax(axis=1)]

    def _stack(
        self, features: Mapping[str, np.ndarray], groups: Sequence[str], fit: bool
    ) -> np.ndarray:
        """Stack continuous groups into one ``[N, F]`` matrix (recording columns when fitting)."""
        parts, start = [], 0
        for name in groups:
            values = features[name].reshape(len(features[name]), -1).astype(np.float64)
            if fit:
                self.columns[name] = slice(start, start + values.shape[1])
                start += values.shape[1]
            parts.append(values)
        samples = len(next(iter(features.values())))
        return np.concatenate(parts, axis=1) if parts else np.zeros((samples, 0))


def _gaussian_log_density(
    values: np.ndarray, mean: np.ndarray, covariance: np.ndarray
) -> np.ndarray:
    """Log-density of ``[N, F]`` samples under one multivariate Gaussian (constant dropped)."""
    cholesky = np.linalg.cholesky(covariance)
    whitened = np.linalg.solve(cholesky, (values - mean).T)
    return -0.5 * (whitened**2).sum(axis=0) - np.log(np.diag(cholesky)).sum()


def confusion_scores(
    predicted: np.ndarray, truth: np.ndarray, num_classes: int
) -> dict[str, object]:
    """Overall accuracy, mean IoU and per-class IoU.

    Args:
        predicted: ``[N]`` predicted classes.
        truth: ``[N]`` true classes.
        num_classes: number of classes.

    Returns:
        ``{"accuracy": float, "miou": float, "iou": [K] array}``; the mean IoU is taken over the
        classes present in ``truth``.
    """
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    iou = np.divide(true_positive, union, out=np.zeros(num_classes), where=union > 0)
    present = confusion.sum(axis=1) > 0
    return {
        "accuracy": float(true_positive.sum() / max(confusion.sum(), 1)),
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "iou": iou,
    }
