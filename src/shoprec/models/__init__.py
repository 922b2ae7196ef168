"""Candidate generators, each named by its config's ``kind``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from shoprec.exceptions import ConfigError, describe_validation_error
from shoprec.models.als import ALSConfig, ALSModel, BPRConfig, BPRModel
from shoprec.models.base import ModelConfig, Recommender
from shoprec.models.buy_again import BuyAgainConfig, BuyAgainModel
from shoprec.models.content import ContentConfig, ContentModel
from shoprec.models.copurchase import CoPurchaseConfig, CoPurchaseModel
from shoprec.models.ease import EASEConfig, EASEModel
from shoprec.models.itemknn import ItemKNNConfig, ItemKNNModel
from shoprec.models.next_item import NextItemConfig, NextItemModel
from shoprec.models.popular import PopularityConfig, PopularityModel
from shoprec.ranking.two_stage import TwoStageConfig, TwoStageModel  # after the generators

if TYPE_CHECKING:
    from shoprec.data.dataset import Dataset

__all__ = [
    "MODELS",
    "AnyModelConfig",
    "ModelConfig",
    "Recommender",
    "fit_model",
    "model_from_config",
    "parse_model_config",
    "shared_fits",
]

MODELS: dict[str, type[Recommender[Any]]] = {
    "popular": PopularityModel,
    "copurchase": CoPurchaseModel,
    "itemknn": ItemKNNModel,
    "ease": EASEModel,
    "als": ALSModel,
    "bpr": BPRModel,
    "content": ContentModel,
    "buy_again": BuyAgainModel,
    "next_item": NextItemModel,
    "two_stage": TwoStageModel,
}

AnyModelConfig = Annotated[
    PopularityConfig
    | CoPurchaseConfig
    | ItemKNNConfig
    | EASEConfig
    | ALSConfig
    | BPRConfig
    | ContentConfig
    | BuyAgainConfig
    | NextItemConfig
    | TwoStageConfig,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[AnyModelConfig] = TypeAdapter(AnyModelConfig)


def parse_model_config(config: ModelConfig | dict[str, Any] | str) -> ModelConfig:
    """A model config from a config object, a mapping with ``kind``, or just a kind name."""
    if isinstance(config, ModelConfig):
        return config
    data = {"kind": config} if isinstance(config, str) else dict(config)
    kind = data.get("kind")
    if kind not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"unknown model {kind!r}; known models: {known}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc, skip=1, root=str(kind))
        raise ConfigError(f"model {kind}: {problems}") from None


def model_from_config(config: ModelConfig | dict[str, Any] | str) -> Recommender[Any]:
    """An unfitted model named by its config (``{"kind": "ease", "l2": 300}``)."""
    parsed = parse_model_config(config)
    return MODELS[parsed.kind](parsed)


# Within shared_fits(): (dataset, config) -> the model fitted on that dataset with that config.
_FITTED: ContextVar[dict[tuple[int, str], tuple[Any, Recommender[Any]]] | None] = ContextVar(
    "shoprec_fitted_models", default=None
)


@contextmanager
def shared_fits() -> Iterator[None]:
    """Within the block, a model fitted twice on the same :class:`Dataset` object with the same
    config is fitted once (a build's EASE and the two-stage model's EASE generator)."""
    token = _FITTED.set({})
    try:
        yield
    finally:
        _FITTED.reset(token)


def fit_model(config: ModelConfig | dict[str, Any] | str, dataset: Dataset) -> Recommender[Any]:
    """``model_from_config(config).fit(dataset)``, shared within :func:`shared_fits`."""
    parsed = parse_model_config(config)
    fitted = _FITTED.get()
    if fitted is None:
        return MODELS[parsed.kind](parsed).fit(dataset)
    key = (id(dataset), json.dumps(parsed.model_dump(mode="json"), sort_keys=True))
    if key not in fitted:
        # the dataset is kept with the model, so its id is not reused while the block lasts
        fitted[key] = (dataset, MODELS[parsed.kind](parsed).fit(dataset))
    return fitted[key][1]
