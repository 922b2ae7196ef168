"""Every configured model on the same split, scored by the same metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from shoprec.config import DEFAULT_METRICS, EventWeights
from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPE, ITEM_ID, PRICE, USER_ID
from shoprec.evaluation.metrics import EvaluationContext, compute_metrics, parse_metric
from shoprec.evaluation.splitters import Split
from shoprec.exceptions import ConfigError, ShoprecError
from shoprec.models import ModelConfig, model_from_config, parse_model_config
from shoprec.models.content import ContentConfig, item_vectors

__all__ = [
    "CURVE_METRICS",
    "DEFAULT_METRICS",
    "EvaluationResult",
    "ModelRun",
    "evaluate_models",
    "evaluation_context",
]

CURVE_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")


@dataclass
class ModelRun:
    """One model (with one choice of excluding seen items) evaluated on the split."""

    name: str
    kind: str
    exclude_seen: bool
    config: dict[str, Any]
    fit_seconds: float
    recommend_seconds: float
    metrics: dict[str, float]
    curves: dict[str, dict[int, float]]
    recommended_popularity: list[float] = field(repr=False)
    feature_importance: dict[str, float] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """All runs of one evaluation, with what the report needs to draw them."""

    split: str
    k: int
    n_train_events: int
    n_test_users: int
    n_items: int
    runs: list[ModelRun]
    catalogue_popularity: list[float] = field(repr=False)

    def table(self) -> pl.DataFrame:
        """One row per run: model, exclude_seen, the metrics at k and the timings."""
        rows = [
            {
                "model": run.name,
                "exclude_seen": run.exclude_seen,
                **run.metrics,
                "fit_s": round(run.fit_seconds, 2),
                "recommend_s": round(run.recommend_seconds, 2),
            }
            for run in self.runs
        ]
        return pl.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result.pop("catalogue_popularity")
        for run in result["runs"]:
            run.pop("recommended_popularity")
        return result


def evaluation_context(dataset: Dataset, train: pl.DataFrame) -> EvaluationContext:
    """Catalogue, popularity, categories and price ranges of the training data."""
    counts = dataset.popularity_counts()
    catalogue = dataset.item_ids.external.tolist()
    # Diversity is measured between the content vectors of the items (attributes and text).
    vectors = item_vectors(dataset.items, ContentConfig())
    features = pl.DataFrame({ITEM_ID: catalogue}).with_columns(
        pl.Series("vector", vectors, dtype=pl.Array(pl.Float32, vectors.shape[1]))
    )
    prices = None
    ranges = None
    item_prices = dataset.item_column(PRICE)
    if item_prices.dtype.is_numeric() and item_prices.drop_nulls().len():
        prices = pl.DataFrame({ITEM_ID: catalogue, "price": item_prices.cast(pl.Float64)})
        paid = train.filter(
            (pl.col(EVENT_TYPE) == "purchase")
            & pl.col(PRICE).is_not_null()
            & pl.col(USER_ID).is_not_null()
        )
        ranges = paid.group_by(USER_ID).agg(
            pl.col(PRICE).min().alias("low"), pl.col(PRICE).max().alias("high")
        )
    return EvaluationContext(
        catalogue=catalogue,
        item_popularity=pl.DataFrame({ITEM_ID: catalogue, "count": counts}),
        item_features=features,
        item_prices=prices,
        user_price_ranges=ranges if ranges is not None and ranges.height else None,
    )


def evaluate_models(
    models: Mapping[str, ModelConfig | dict[str, Any] | str],
    split: Split,
    *,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    weights: EventWeights | None = None,
    k: int = 10,
    curve_ks: Sequence[int] = (1, 5, 10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    exclude_seen: Literal["model", "both", "exclude", "keep"] = "both",
    on_model: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Fit each model on the split's training events and score its top-k for the test users.

    ``exclude_seen="both"`` evaluates every model with and without the user's seen items
    excluded; ``"model"`` only with the model's own setting; ``"exclude"`` and ``"keep"`` force
    one setting on every model (a protocol such as "seen items excluded").
    """
    if k <= 0 or any(c <= 0 for c in curve_ks):
        raise ShoprecError(f"k must be a positive number of items, not {k}")
    if not models:
        raise ConfigError("no models to evaluate")
    try:
        at_k = [parse_metric(f"{name}@{k}") for name in metrics]
        curve = [parse_metric(f"{name}@{c}") for name in CURVE_METRICS for c in curve_ks]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    configs = {name: parse_model_config(config) for name, config in models.items()}
    dataset = Dataset.from_events(split.train, items=items, users=users, weights=weights)
    context = evaluation_context(dataset, split.train)
    # The price-tier check needs prices; without them it is left out rather than invented.
    if context.item_prices is None or context.user_price_ranges is None:
        at_k = [m for m in at_k if not m.name.startswith("price_tier_fit")]
    popularity = dataset.popularity_counts()
    popularity_of = dict(zip(dataset.item_ids.external.tolist(), popularity.tolist(), strict=True))
    test_users = split.test_users
    depth = max(k, *curve_ks)
    runs: list[ModelRun] = []
    for name, config in configs.items():
        if on_model is not None:
            on_model(name)
        started = time.perf_counter()
        model = model_from_config(config).fit(dataset)
        fitted = time.perf_counter() - started
        variants: tuple[bool, ...] = {
            "both": (config.exclude_seen, not config.exclude_seen),
            "model": (config.exclude_seen,),
            "exclude": (True,),
            "keep": (False,),
        }[exclude_seen]
        for exclude in variants:
            started = time.perf_counter()
            recs = model.recommend(test_users, k=depth, exclude_seen=exclude)
            elapsed = time.perf_counter() - started
            values = compute_metrics(at_k, recs, split.truth, context)
            curve_values = compute_metrics(curve, recs, split.truth, context)
            curves: dict[str, dict[int, float]] = {}
            for metric_name, value in curve_values.items():
                prefix, _, cut = metric_name.partition("@")
                curves.setdefault(prefix, {})[int(cut)] = value
            top = recs.filter(pl.col("rank") <= k).get_column(ITEM_ID).to_list()
            runs.append(
                ModelRun(
                    name=name,
                    kind=config.kind,
                    exclude_seen=exclude,
                    config=config.model_dump(),
                    fit_seconds=fitted,
                    recommend_seconds=elapsed,
                    metrics=values,
                    curves=curves,
                    recommended_popularity=[popularity_of.get(i, 0.0) for i in top],
                    feature_importance=dict(getattr(model, "feature_importance_", {}) or {}),
                )
            )
    return EvaluationResult(
        split=split.description,
        k=k,
        n_train_events=split.train.height,
        n_test_users=len(test_users),
        n_items=dataset.n_items,
        runs=runs,
        catalogue_popularity=np.asarray(popularity, dtype=float).tolist(),
    )
