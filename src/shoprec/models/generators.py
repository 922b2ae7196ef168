"""The candidate generators by kind, and fitting one once per dataset and config.

The two-stage model (:mod:`shoprec.ranking.two_stage`) fits its generators through
:func:`fit_generator`; :mod:`shoprec.models` adds the two-stage model itself to the kinds a
config may name. Within :func:`shared_fits` both share one fit of the same model on the same
data (a build's EASE and the two-stage model's EASE generator).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shoprec.exceptions import ConfigError, describe_validation_error
from shoprec.models.als import ALSModel, BPRModel
from shoprec.models.base import ModelConfig, Recommender
from shoprec.models.buy_again import BuyAgainModel
from shoprec.models.content import ContentModel
from shoprec.models.copurchase import CoPurchaseModel
from shoprec.models.ease import EASEModel
from shoprec.models.itemknn import ItemKNNModel
from shoprec.models.next_item import NextItemModel
from shoprec.models.popular import PopularityModel

if TYPE_CHECKING:
    from shoprec.data.dataset import Dataset

__all__ = ["GENERATORS", "fit_generator", "fit_once", "parse_config", "shared_fits"]

GENERATORS: dict[str, type[Recommender[Any]]] = {
    "popular": PopularityModel,
    "copurchase": CoPurchaseModel,
    "itemknn": ItemKNNModel,
    "ease": EASEModel,
    "als": ALSModel,
    "bpr": BPRModel,
    "content": ContentModel,
    "buy_again": BuyAgainModel,
    "next_item": NextItemModel,
}


def parse_config(
    config: ModelConfig | Mapping[str, Any] | str,
    kinds: Mapping[str, type[Recommender[Any]]],
    *,
    what: str = "model",
) -> ModelConfig:
    """The config of one of ``kinds`` from a config object, a mapping with ``kind``, or just a
    kind name; :class:`ConfigError` naming the unknown kind or each invalid field."""
    if isinstance(config, ModelConfig):
        return config
    data = {"kind": config} if isinstance(config, str) else dict(config)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        known = ", ".join(sorted(kinds))
        raise ConfigError(f"unknown {what} {kind!r}; known {what}s: {known}")
    try:
        return kinds[kind].config_class.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{what} {kind}: {describe_validation_error(exc, root=kind)}") from None


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


def fit_once(
    config: ModelConfig, model_class: type[Recommender[Any]], dataset: Dataset
) -> Recommender[Any]:
    """``model_class(config).fit(dataset)``, shared within :func:`shared_fits`."""
    fitted = _FITTED.get()
    if fitted is None:
        return model_class(config).fit(dataset)
    key = (id(dataset), json.dumps(config.model_dump(mode="json"), sort_keys=True))
    if key not in fitted:
        # the dataset is kept with the model, so its id is not reused while the block lasts
        fitted[key] = (dataset, model_class(config).fit(dataset))
    return fitted[key][1]


def fit_generator(
    config: ModelConfig | Mapping[str, Any] | str, dataset: Dataset
) -> Recommender[Any]:
    """The generator ``config`` names, fitted on ``dataset`` (once within :func:`shared_fits`)."""
    parsed = parse_config(config, GENERATORS, what="generator")
    return fit_once(parsed, GENERATORS[parsed.kind], dataset)
