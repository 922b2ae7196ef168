"""What the ranking pipeline, its scorer and the validation gate read of a fitted two-stage model.

:mod:`shoprec.ranking.pipeline`, :mod:`shoprec.ranking.scorer` and :mod:`shoprec.ranking.gate`
type the model they serve with :class:`FittedTwoStage`, a Protocol of the attributes they read,
so they need not import :class:`~shoprec.ranking.two_stage.TwoStageModel`, which calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from shoprec.data.dataset import IdMap
    from shoprec.features.build import FeatureTables
    from shoprec.features.encoding import CategoricalEncoder
    from shoprec.models.base import Recommender
    from shoprec.ranking.rules import RulesConfig

__all__ = ["ColdStartModel", "FittedTwoStage", "Ranker"]


class Ranker(Protocol):
    """What the second stage needs of a learner; LightGBM's ``LGBMRanker`` fits as it is."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> Any: ...  # noqa: N803

    def predict(self, X: Any, **kwargs: Any) -> Any: ...  # noqa: N803


class ColdStartModel(Protocol):
    """A fitted model's cold-start list and tie order (every :class:`Recommender` has them)."""

    tie_rank_: np.ndarray

    def _cold_start(self, context: Mapping[str, str] | None) -> tuple[np.ndarray, str]: ...


class RankingSettings(Protocol):
    """The part of the two-stage config the scorer reads."""

    @property
    def rules(self) -> RulesConfig: ...


class FittedTwoStage(ColdStartModel, Protocol):
    """A fitted two-stage model as its pipeline, scorer and validation gate read it."""

    item_ids_: IdMap
    generators_: dict[str, Recommender[Any]]
    features_: FeatureTables
    encoders_: list[CategoricalEncoder]
    feature_names_: list[str]
    ranker_: Ranker | None
    item_info_: pl.DataFrame
    user_max_price_: pl.DataFrame
    choice_: str  # the validation gate sets it to score each way of ranking

    @property
    def config(self) -> RankingSettings: ...

    @property
    def scorer_choice(self) -> str: ...

    @property
    def loaded_from(self) -> Path | None: ...

    def _candidate_counts(self) -> dict[str, int]: ...

    def recommend(
        self, user_ids: Sequence[str], k: int = 10, *, explain: bool = True
    ) -> pl.DataFrame: ...
