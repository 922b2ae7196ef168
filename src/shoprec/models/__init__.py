"""Candidate generators, each named by its config's ``kind``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from shoprec.exceptions import ConfigError, describe_validation_error
from shoprec.models.als import ALSConfig, ALSModel, BPRConfig, BPRModel
from shoprec.models.base import ModelConfig, Recommender
from shoprec.models.buy_again import BuyAgainConfig, BuyAgainModel
from shoprec.models.content import ContentConfig, ContentModel
from shoprec.models.copurchase import CoPurchaseConfig, CoPurchaseModel
from shoprec.models.ease import EASEConfig, EASEModel
from shoprec.models.itemknn import ItemKNNConfig, ItemKNNModel
from shoprec.models.popular import PopularityConfig, PopularityModel
from shoprec.ranking.two_stage import TwoStageConfig, TwoStageModel  # after the generators

__all__ = [
    "MODELS",
    "AnyModelConfig",
    "ModelConfig",
    "Recommender",
    "model_from_config",
    "parse_model_config",
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
