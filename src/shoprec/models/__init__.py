"""Every model a config can name by its ``kind``: the candidate generators
(:mod:`shoprec.models.generators`) and the two-stage model that ranks their candidates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shoprec.exceptions import ConfigError
from shoprec.models.base import ModelConfig, Recommender
from shoprec.models.generators import GENERATORS, fit_once, parse_config, shared_fits
from shoprec.ranking.two_stage import TwoStageModel

if TYPE_CHECKING:
    from shoprec.data.dataset import Dataset

__all__ = [
    "MODELS",
    "ModelConfig",
    "Recommender",
    "fit_model",
    "model_from_config",
    "parse_model_config",
    "parse_model_settings",
    "shared_fits",
]

MODELS: dict[str, type[Recommender[Any]]] = {**GENERATORS, "two_stage": TwoStageModel}


def parse_model_config(config: ModelConfig | Mapping[str, Any] | str) -> ModelConfig:
    """A model config from a config object, a mapping with ``kind``, or just a kind name."""
    return parse_config(config, MODELS)


def parse_model_settings(
    models: Mapping[str, Mapping[str, Any]], default_model: str = "auto"
) -> dict[str, ModelConfig]:
    """The settings' named models (``Settings.models``), each parsed, and ``default_model``
    checked to be one of them (or ``auto``); :class:`ConfigError` naming the field
    (``models.fast: model ease: l2: ...``)."""
    parsed = {}
    for name, config in models.items():
        try:
            parsed[name] = parse_model_config(config)
        except ConfigError as exc:
            raise ConfigError(f"models.{name}: {exc}") from None
    if default_model != "auto" and default_model not in models:
        known = ", ".join(models) or "none"
        raise ConfigError(f"default_model {default_model!r} is not among the models ({known})")
    return parsed


def model_from_config(config: ModelConfig | Mapping[str, Any] | str) -> Recommender[Any]:
    """An unfitted model named by its config (``{"kind": "ease", "l2": 300}``)."""
    parsed = parse_model_config(config)
    return MODELS[parsed.kind](parsed)


def fit_model(config: ModelConfig | Mapping[str, Any] | str, dataset: Dataset) -> Recommender[Any]:
    """``model_from_config(config).fit(dataset)``, shared within :func:`shared_fits`."""
    parsed = parse_model_config(config)
    return fit_once(parsed, MODELS[parsed.kind], dataset)
