"""Hyperparameter search by cross-validation over time-ordered folds.

The folds live inside the training events only (the test part of the evaluation split is never
seen): fold ``i`` of ``n`` trains on everything before cut ``i`` and validates on the relevant
events between cuts ``i`` and ``i + 1``, the cuts spread over the last ``validation_share`` of
the time range. A plain grid over the search space (every combination) or, when the grid is
larger than ``max_trials``, a seeded random sample of it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from shoprec.config import EventWeights
from shoprec.data.dataset import Dataset
from shoprec.data.schema import TS
from shoprec.evaluation.metrics import compute_metrics, parse_metric
from shoprec.evaluation.splitters import Split, TimeSplit
from shoprec.exceptions import ConfigError, DataError
from shoprec.models import ModelConfig, model_from_config, parse_model_config

__all__ = ["TuningConfig", "TuningResult", "time_folds", "tune"]


DEFAULT_SPACE: dict[str, dict[str, list[Any]]] = {
    "ease": {"l2": [50.0, 200.0, 500.0, 1000.0]},
    "als": {
        "factors": [32, 64],
        "regularization": [0.05, 5.0, 50.0],
        "alpha": [1.0, 3.0, 10.0],
    },
    "bpr": {"factors": [32, 64], "learning_rate": [0.01, 0.05]},
    "itemknn": {"neighbours": [50, 200], "shrink": [0.0, 10.0]},
    "content": {"popularity_weight": [0.2, 0.5, 1.0], "blend": ["ema", "decay"]},
    "copurchase": {"top_n": [20, 100]},
    "buy_again": {"half_life_days": [30.0, 90.0, 365.0]},
    "popular": {"mode": ["global", "category", "trending"]},
}


class TuningConfig(BaseModel):
    """How to search: folds, metric, budget and the search space per model kind."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(default=2, ge=1, le=10)
    validation_share: float = Field(default=0.2, gt=0, lt=1)
    metric: str = "ndcg@10"
    max_trials: int = Field(default=12, ge=1)
    seed: int = 0
    test_event_types: list[str] = Field(default_factory=lambda: ["purchase"])
    space: dict[str, dict[str, list[Any]]] = Field(
        default_factory=lambda: dict(DEFAULT_SPACE),
        description="model kind -> parameter -> values to try",
    )


@dataclass(frozen=True)
class TuningResult:
    best: ModelConfig
    best_score: float
    trials: list[tuple[dict[str, Any], float]]
    seconds: float


def time_folds(
    events: pl.DataFrame,
    *,
    folds: int,
    validation_share: float,
    test_event_types: Sequence[str],
) -> list[Split]:
    """Expanding-window folds over the last ``validation_share`` of the time range."""
    first, last = events.get_column(TS).min(), events.get_column(TS).max()
    if not isinstance(first, datetime) or not isinstance(last, datetime):
        raise DataError("tuning: there are no events")
    span = last - first
    cuts = [first + span * (1 - validation_share * (1 - i / folds)) for i in range(folds + 1)]
    splits = []
    for start, end in itertools.pairwise(cuts):
        window = events.filter(pl.col(TS) < end)
        try:
            splits.append(
                TimeSplit(cutoff=start, test_event_types=list(test_event_types)).split(window)
            )
        except DataError:
            continue  # a fold with no validation users says nothing; the others still count
    if not splits:
        raise DataError("tuning: no fold has validation users; use fewer folds or a larger share")
    return splits


def _candidates(space: Mapping[str, Sequence[Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    names = sorted(space)
    grid = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(space[n] for n in names))
    ]
    if len(grid) <= limit:
        return grid
    chosen = np.random.default_rng(seed).choice(len(grid), size=limit, replace=False)
    return [grid[i] for i in sorted(chosen.tolist())]


def tune(
    base: ModelConfig | dict[str, Any] | str,
    events: pl.DataFrame,
    config: TuningConfig | None = None,
    *,
    items: pl.DataFrame | None = None,
    weights: EventWeights | None = None,
    on_trial: Callable[[dict[str, Any], float], None] | None = None,
) -> TuningResult:
    """Search ``config.space[kind]`` around ``base`` and return the best config by mean score."""
    config = config or TuningConfig()
    base_config = parse_model_config(base)
    space = config.space.get(base_config.kind, {})
    try:
        metric = parse_metric(config.metric)
    except ValueError as exc:
        raise ConfigError(f"tuning: {exc}") from None
    started = time.perf_counter()
    splits = time_folds(
        events,
        folds=config.folds,
        validation_share=config.validation_share,
        test_event_types=config.test_event_types,
    )
    datasets = [Dataset.from_events(s.train, items=items, weights=weights) for s in splits]
    trials: list[tuple[dict[str, Any], float]] = []
    best, best_score = base_config, -np.inf
    for params in _candidates(space, config.max_trials, config.seed) or [{}]:
        candidate = parse_model_config(base_config.model_dump() | params)
        scores = []
        for split, dataset in zip(splits, datasets, strict=True):
            recs = model_from_config(candidate).fit(dataset).recommend(split.test_users, k=metric.k)
            scores.append(compute_metrics([metric], recs, split.truth)[metric.name])
        score = float(np.mean(scores))
        trials.append((params, score))
        if on_trial is not None:
            on_trial(params, score)
        if score > best_score:
            best, best_score = candidate, score
    return TuningResult(best, float(best_score), trials, time.perf_counter() - started)
