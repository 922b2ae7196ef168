"""Evaluate the configured models on the workspace lake (what ``shoprec evaluate`` runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from shoprec.config import Settings
from shoprec.data.lake import Lake
from shoprec.evaluation.runner import EvaluationResult, evaluate_models
from shoprec.evaluation.splitters import make_split, parse_split_config
from shoprec.evaluation.tuning import TuningConfig, tune
from shoprec.exceptions import DataError
from shoprec.models import ModelConfig

__all__ = ["LakeData", "evaluate_lake", "lake_data"]


@dataclass(frozen=True)
class LakeData:
    events: pl.DataFrame
    items: pl.DataFrame | None
    users: pl.DataFrame | None


def lake_data(settings: Settings) -> LakeData:
    """Events, catalogue and user table of the workspace (an empty lake is an error)."""
    lake = Lake(settings.workspace)
    events = lake.events()
    if events.height == 0:
        raise DataError(f"{lake.root}: the lake holds no events; run 'shoprec ingest' first")
    items, users = lake.items(), lake.users()
    return LakeData(events, items if items.height else None, users if users.height else None)


def evaluate_lake(
    settings: Settings,
    models: dict[str, ModelConfig],
    *,
    k: int,
    tune_first: bool,
    on_step: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Split the lake as configured, optionally tune each model on the training part, and
    evaluate every model on the same split."""
    data = lake_data(settings)
    split = make_split(parse_split_config(settings.evaluation.split), data.events)
    if tune_first:
        tuning = TuningConfig.model_validate(settings.evaluation.tuning)
        for name, config in list(models.items()):
            if on_step is not None:
                on_step(f"tuning {name}")
            models[name] = tune(
                config, split.train, tuning, items=data.items, weights=settings.event_weights
            ).best
    return evaluate_models(
        models,
        split,
        items=data.items,
        users=data.users,
        weights=settings.event_weights,
        k=k,
        curve_ks=settings.evaluation.curve_ks,
        metrics=settings.evaluation.metrics,
        exclude_seen=settings.evaluation.exclude_seen,
        on_model=None if on_step is None else lambda name: on_step(f"evaluating {name}"),
    )
