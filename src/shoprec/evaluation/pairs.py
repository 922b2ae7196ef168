"""Metrics of scored pairs (a score per user × item, a 0/1 outcome): AUC and log loss."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

__all__ = ["auc", "log_loss"]


def auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative.

    Ties count one half (the Mann-Whitney U statistic with average ranks).

    Parameters
    ----------
    scores
        One finite score per pair, higher meaning more likely positive.
    labels
        0/1 (or boolean) per pair; both classes must occur.

    Raises
    ------
    ValueError
        On different lengths, no pairs, non-finite scores, labels other than 0/1, or only
        one class.

    Examples
    --------
    Positives score 0.8 and 0.4, negatives 0.5 and 0.1: three of four pairs are ordered.

    >>> auc([0.8, 0.4, 0.5, 0.1], [1, 1, 0, 0])
    0.75
    """
    values, positive = _pairs(scores, labels, "scores")
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if n_positive == 0 or n_negative == 0:
        only = "positive" if n_negative == 0 else "negative"
        raise ValueError(f"auc needs both classes among the labels; all are {only}")
    ranks = rankdata(values)
    u_statistic = ranks[positive].sum() - n_positive * (n_positive + 1) / 2
    return float(u_statistic / (n_positive * n_negative))


def log_loss(probabilities: npt.ArrayLike, labels: npt.ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood (natural log) of the labels under the probabilities.

    Probabilities are clipped to ``[eps, 1 - eps]`` so certainty that proves wrong costs
    ``-log(eps)`` instead of infinity.

    Raises
    ------
    ValueError
        On different lengths, no pairs, probabilities outside [0, 1], labels other than 0/1,
        or ``eps`` outside (0, 0.5).

    Examples
    --------
    >>> round(log_loss([0.9, 0.2], [1, 0]), 4)  # -(log 0.9 + log 0.8) / 2
    0.1643
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"log_loss: eps must lie in (0, 0.5), got {eps}")
    values, positive = _pairs(probabilities, labels, "probabilities")
    if ((values < 0) | (values > 1)).any():
        raise ValueError("log_loss: probabilities must lie in [0, 1]")
    clipped = np.clip(values, eps, 1 - eps)
    return float(-np.where(positive, np.log(clipped), np.log1p(-clipped)).mean())


def _pairs(
    values: npt.ArrayLike, labels: npt.ArrayLike, what: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    numbers = np.asarray(values, dtype=np.float64)
    classes = np.asarray(labels, dtype=np.float64)
    if numbers.ndim != 1 or classes.ndim != 1:
        raise ValueError(f"{what} and labels must be one-dimensional")
    if numbers.size != classes.size:
        raise ValueError(f"{what} has {numbers.size} values but labels has {classes.size}")
    if numbers.size == 0:
        raise ValueError(f"{what} and labels are empty")
    if not np.isfinite(numbers).all():
        raise ValueError(f"{what} must be finite numbers")
    if not np.isin(classes, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return numbers, classes == 1.0
