"""The two-stage recommender: candidates from several generators, re-ranked by LightGBM.

Training is point-in-time correct, cut to the data's shape (:mod:`shoprec.ranking.examples`):
labels are the positive events the shop has; examples come from global time windows (the
generators and features of a block see only what came before its window; the earlier windows
train, the last one stops the training early and is the validation gate's), or from a per-user
holdout (each user's last basket, or a random share of their positives, out of the history
that a single block's generators and features see). The validation gate
(:mod:`shoprec.ranking.gate`) then scores the ranker, rank fusion and every generator alone on
users whose labels nothing saw, through the same ``recommend`` that serves, and the model serves
the best. Once early stopping has chosen the number of trees, the ranker is refitted on every
labelled user (``refit_with_validation``); for serving, the generators are refitted on
everything and the features taken as of the end of the data. Every list comes from
:mod:`shoprec.ranking.pipeline`.

Besides the generators' scores and ranks (and how many generators proposed a candidate, and
their reciprocal-rank fusion), the ranker sees user, item and user × item features, including
the shopper's taste: category affinity from all events and from purchases, the item's share of
its category's activity per day on sale, and the shopper's share of the item's price band
(see :func:`shoprec.features.build.compute_features`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPE, ITEM_ID, TS, USER_ID
from shoprec.exceptions import DataError, ShoprecError
from shoprec.features.build import PAIR_COUNTS, FeatureConfig, FeatureTables, compute_features
from shoprec.features.encoding import CategoricalEncoder, haversine_km
from shoprec.models.base import ModelConfig, Recommender
from shoprec.models.generators import fit_generator
from shoprec.ranking.candidates import candidate_expressions, candidate_frame, taste_expressions
from shoprec.ranking.examples import (
    assign_roles,
    choose_labels,
    choose_scheme,
    data_start,
    per_user_holdout,
    positive_events,
)
from shoprec.ranking.fitted import Ranker
from shoprec.ranking.gate import choose_scorer, scoring_memo_in_use, validation_table
from shoprec.ranking.pipeline import pipeline_for
from shoprec.ranking.rules import RulesConfig

__all__ = ["Ranker", "TwoStageConfig", "TwoStageModel"]


def _default_generators() -> dict[str, dict[str, Any]]:
    return {
        "buy_again": {"kind": "buy_again"},
        "ease": {"kind": "ease"},
        "copurchase": {"kind": "copurchase"},
        "itemknn": {"kind": "itemknn"},
        "als": {"kind": "als", "regularization": 5.0, "alpha": 3.0},
        "content": {"kind": "content"},
        "next_item": {"kind": "next_item"},
        "popular": {"kind": "popular", "mode": "trending"},
    }


class TwoStageConfig(ModelConfig):
    kind: Literal["two_stage"] = "two_stage"
    exclude_seen: bool = False  # the ranker learns whether shoppers re-buy
    generators: dict[str, dict[str, Any]] = Field(default_factory=_default_generators)
    candidates_per_generator: int = Field(default=50, ge=1, le=1000)
    candidates: dict[str, int] = Field(
        default_factory=dict, description="candidates from a given generator, overriding the above"
    )
    label_event_types: list[str] | None = Field(
        default=None,
        description="events that label a positive; default: purchases where the data has them, "
        "else the event types with the highest weight (see shoprec.ranking.examples)",
    )
    label_min_rating: float | Literal["auto"] | None = Field(
        default="auto",
        description="ratings (value-weighted types) below this are not positives; auto: the "
        "middle of the values seen; null: every rating",
    )
    example_scheme: Literal["auto", "time_window", "last_per_user", "random_per_user"] = Field(
        default="auto", description="how training examples are cut (chosen from the data)"
    )
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of a user's positives held out (random)"
    )
    stop_share: float = Field(
        default=0.15, ge=0, lt=0.5, description="share of example users for early stopping"
    )
    gate_share: float = Field(
        default=0.25, ge=0, lt=0.5, description="share of example users the gate scores on"
    )
    gate_k: int = Field(default=10, ge=1, le=100, description="the gate's NDCG cut-off")
    scorer: str = Field(
        default="auto",
        description="what orders the candidates: auto (the best on the validation gate), "
        "ranker, fusion, or the name of one generator",
    )
    label_window_days: float | None = Field(
        default=None, gt=0, description="default: label_window_share of the data's time span"
    )
    label_window_share: float = Field(default=0.2, gt=0, lt=0.5)
    train_windows: int = Field(
        default=2, ge=1, le=6, description="consecutive labelled windows to train on"
    )
    max_train_users: int = Field(default=5000, ge=10)
    ranker: dict[str, Any] = Field(
        default_factory=lambda: {
            "objective": "lambdarank",
            "n_estimators": 600,
            "learning_rate": 0.03,
            "num_leaves": 15,
            "min_child_samples": 50,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "random_state": 0,
            "verbose": -1,
        }
    )
    early_stopping_rounds: int = Field(default=40, ge=1)
    min_trees: int = Field(
        default=30,
        ge=1,
        description="early stopping never leaves the refitted ranker fewer trees (the NDCG of a "
        "few stopping users is noisy)",
    )
    refit_with_validation: bool = Field(
        default=True,
        description="once early stopping has chosen the number of trees, refit the ranker on "
        "the training and validation windows together",
    )
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    seed: int = 0
    seen: Literal["auto", "exclude", "keep"] = Field(
        default="auto",
        description="exclude items the user already bought; auto decides from the repeat-purchase "
        "rate measured in the training data",
    )
    repeat_rate_threshold: float = Field(default=0.05, ge=0, le=1)
    rules: RulesConfig = Field(default_factory=RulesConfig)


def _repeat_rate(events: pl.DataFrame, types: Sequence[str]) -> float:
    """Share of purchases of an item the same user had bought before."""
    bought = events.filter(
        pl.col(EVENT_TYPE).is_in(list(types))
        & pl.col(USER_ID).is_not_null()
        & pl.col(ITEM_ID).is_not_null()
    ).sort(TS)
    if bought.height == 0:
        return 0.0
    again = bought.select((pl.int_range(pl.len()).over(USER_ID, ITEM_ID) > 0).mean()).item()
    return float(again or 0.0)


@dataclass
class _Block:
    """Labelled examples of one role, or the gate users with what scoring them needs."""

    role: str  # train, stop or gate
    frame: pl.DataFrame | None
    gate_users: list[str]
    labels: pl.DataFrame = field(default_factory=pl.DataFrame)
    history: pl.DataFrame | None = None
    data: Dataset | None = None
    generators: dict[str, Recommender[Any]] | None = None
    as_of: datetime | None = None


def _stack(frames: Sequence[pl.DataFrame | None]) -> pl.DataFrame | None:
    present = [f for f in frames if f is not None and f.height]
    if not present:
        return None
    return pl.concat(present, how="diagonal_relaxed").sort(USER_ID, "__window", ITEM_ID)


def _constant(predicted: np.ndarray) -> bool:
    """Whether a ranker's predictions carry no order (every candidate the same score)."""
    return predicted.size == 0 or float(np.ptp(predicted)) <= 1e-9


class TwoStageModel(Recommender[TwoStageConfig]):
    """Candidates from every configured generator, ranked by LightGBM LambdaRank over
    generator scores and ranks plus user, item and user × item features."""

    config_class = TwoStageConfig

    # -- training --------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset) -> None:
        if dataset.events is None:
            raise DataError("the two-stage model needs the dataset's events (Dataset.from_events)")
        events = dataset.events
        end = events.get_column(TS).max()
        if not isinstance(end, datetime):
            raise DataError("cannot fit the two-stage model without timestamps")
        start, far_out = data_start(events)
        config = self.config
        window = (
            timedelta(days=config.label_window_days)
            if config.label_window_days
            else (end - start) * config.label_window_share
        )
        items = dataset.items.drop("item_index")
        self.warnings_: list[str] = [far_out] if far_out else []
        self._left_out: dict[str, str] | None = None  # generators these data refuse
        self.labels_ = choose_labels(
            events, config.label_event_types, dataset.weights, config.label_min_rating
        )
        positives = positive_events(events, self.labels_)
        self.scheme_ = choose_scheme(
            events, positives, self.labels_, dataset.weights, window, config.example_scheme
        )
        self.repeat_rate_ = _repeat_rate(positives, self.labels_.event_types)
        self.exclude_seen_ = config.seen == "exclude" or (
            config.seen == "auto" and self.repeat_rate_ < config.repeat_rate_threshold
        )
        blocks = self._examples(events, items, dataset, end, window)
        learned = [b.frame for b in blocks if b.frame is not None and b.role == "train"]
        stop = [b.frame for b in blocks if b.frame is not None and b.role == "stop"]
        train = _stack(learned)
        valid = _stack(stop)
        self.ranker_: Ranker | None = None
        self.fallback_: str | None = None
        self.feature_importance_: dict[str, float] = {}
        self.encoders_: list[CategoricalEncoder] = []
        self.numeric_names_: list[str] = []
        self.feature_names_: list[str] = []
        if not self.labels_.event_types:
            self.fallback_ = f"no positive events ({self.labels_.reason}): reciprocal-rank fusion"
        elif train is None:
            self.fallback_ = "no labelled users to train on: reciprocal-rank fusion"
        else:
            self._learn(train, valid)
            if self.ranker_ is not None and _constant(self._predict(_stack([train, valid]))):
                self.fallback_ = "the ranker predicts the same score for every candidate"
        if self.fallback_ is not None:
            self.warnings_.append(f"ranker not used: {self.fallback_}")
        gate = next((b for b in blocks if b.gate_users), None)
        self.validation_: list[dict[str, Any]] = []
        if gate is not None:
            self.validation_ = self._validate(gate, items, dataset)
        self.choice_, self.choice_reason_ = choose_scorer(
            config.scorer,
            self.validation_,
            [name for name in config.generators if name not in (self._left_out or {})],
            self.ranker_ is not None and self.fallback_ is None,
        )
        for row in self.validation_:
            row.pop("per_user", None)
        if self.ranker_ is not None and self.fallback_ is None and config.refit_with_validation:
            everything = _stack([b.frame for b in blocks if b.frame is not None])
            if everything is not None and self._best_iteration:
                self.ranker_ = self._refit(everything, self._best_iteration)
        self._assemble(events, dataset, self._fit_generators(dataset), end)

    def _examples(
        self,
        events: pl.DataFrame,
        items: pl.DataFrame,
        dataset: Dataset,
        end: datetime,
        window: timedelta,
    ) -> list[_Block]:
        """The labelled blocks of the chosen scheme, each with its users' roles."""
        config = self.config
        if not self.labels_.event_types:
            return []
        scheme = self.scheme_.scheme
        if scheme == "time_window":
            count = config.train_windows
            blocks = []
            for i in range(count + 1):
                as_of = end - (count + 1 - i) * window
                until = end - (count - i) * window
                history = events.filter(pl.col(TS) < as_of)
                labelled = positive_events(
                    events.filter((pl.col(TS) >= as_of) & (pl.col(TS) < until)), self.labels_
                ).select(USER_ID, ITEM_ID)
                # The earlier windows train; the last one stops the training (the number of
                # trees that generalises forward in time) and is the gate's: the model as of
                # its start, scored on what came next.
                last = config.stop_share + config.gate_share
                shares = (
                    (config.stop_share / last, config.gate_share / last)
                    if i == count
                    else (0.0, 0.0)
                )
                blocks += self._block(history, labelled, as_of, items, dataset, shares, as_of)
            return blocks
        history, labelled = per_user_holdout(
            events,
            self.labels_,
            scheme,
            max_users=config.max_train_users,
            fraction=config.holdout_fraction,
            seed=config.seed,
        )
        shares = (config.stop_share, config.gate_share)
        return self._block(
            history, labelled, end + timedelta(microseconds=1), items, dataset, shares
        )

    def _block(
        self,
        history: pl.DataFrame,
        labelled: pl.DataFrame,
        as_of: datetime,
        items: pl.DataFrame,
        dataset: Dataset,
        shares: tuple[float, float],
        window: datetime | None = None,
    ) -> list[_Block]:
        """Candidates with features as of ``as_of`` from ``history``, labelled by
        ``labelled`` pairs; ``shares`` of the users stop the training and are the gate's, the
        rest train."""
        config = self.config
        labels = labelled.unique().with_columns(pl.lit(1).alias("label"))
        known = history.filter(pl.col(USER_ID).is_not_null()).select(USER_ID).unique()
        users = labels.select(USER_ID).unique().join(known, on=USER_ID, how="semi").sort(USER_ID)
        if users.height == 0 or history.height == 0:
            return []
        if users.height > config.max_train_users:
            users = users.sample(config.max_train_users, seed=config.seed)
        roles = assign_roles(users.get_column(USER_ID).to_list(), shares, config.seed)
        block_data = Dataset.from_events(
            history, items=items, users=dataset.users, weights=dataset.weights
        )
        generators = self._fit_generators(block_data)
        features = compute_features(
            history, as_of, items=items, users=dataset.users, config=config.features
        )
        stamp = (window or as_of).timestamp()
        out = []
        for role, members in (("train", roles.train), ("stop", roles.stop), ("gate", roles.gate)):
            if not members:
                continue
            candidates = candidate_frame(
                generators, members, self._candidate_counts(), exclude_seen=self.exclude_seen_
            )
            frame = self._with_features(candidates, features)
            frame = frame.join(labels, on=[USER_ID, ITEM_ID], how="left").with_columns(
                pl.col("label").fill_null(0)
            )
            # Users without a single labelled candidate teach the ranker nothing.
            useful = frame.group_by(USER_ID).agg(pl.col("label").max()).filter(pl.col("label") > 0)
            kept = frame.join(useful.select(USER_ID), on=USER_ID, how="semi")
            # A user labelled in several windows forms one query group per window.
            kept = kept.with_columns(pl.lit(stamp).alias("__window")).sort(USER_ID, ITEM_ID)
            out.append(_Block(role, kept if kept.height else None, []))
        if roles.gate:
            gate_labels = labels.join(
                pl.DataFrame({USER_ID: roles.gate}), on=USER_ID, how="semi"
            ).select(USER_ID, ITEM_ID)
            out.append(
                _Block(
                    "gate", None, roles.gate, gate_labels, history, block_data, generators, as_of
                )
            )
        return out

    def _validate(
        self, gate: _Block, items: pl.DataFrame, dataset: Dataset
    ) -> list[dict[str, Any]]:
        """Every way this model can rank, scored on the gate users: the model as fitted on the
        block's history (the same ``recommend`` that serves), each scorer in turn."""
        assert gate.history is not None
        assert gate.data is not None
        assert gate.as_of is not None
        probe = TwoStageModel(self.config)
        probe._bind(gate.data)
        for name in ("labels_", "scheme_", "repeat_rate_", "exclude_seen_", "warnings_"):
            setattr(probe, name, getattr(self, name))
        for name in ("encoders_", "numeric_names_", "feature_names_", "fallback_"):
            setattr(probe, name, getattr(self, name))
        probe.feature_importance_ = {}
        probe.ranker_ = self.ranker_ if self.fallback_ is None else None
        probe.validation_ = []
        probe._assemble(gate.history, gate.data, gate.generators or {}, gate.as_of)
        return validation_table(probe, gate.gate_users, gate.labels, k=self.config.gate_k)

    def _assemble(
        self,
        events: pl.DataFrame,
        dataset: Dataset,
        generators: dict[str, Recommender[Any]],
        end: datetime,
    ) -> None:
        """What serving needs besides the ranker: the generators, the features as of ``end``
        and the item facts the rules read."""
        items = dataset.items.drop("item_index")
        self.items_ = items
        self.generators_ = generators
        self.features_ = compute_features(
            events,
            end + timedelta(microseconds=1),
            items=items,
            users=dataset.users,
            config=self.config.features,
        )
        self.item_info_ = self._item_info(items, end)
        paid = events.filter(
            pl.col(EVENT_TYPE).is_in(self.labels_.event_types)
            & pl.col(USER_ID).is_not_null()
            & pl.col("price").is_not_null()
        )
        self.user_max_price_ = paid.group_by(USER_ID).agg(pl.col("price").max().alias("max_price"))

    def _learn(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> None:
        """Fit the encoders on the training examples and the ranker on them, stopped on
        ``valid``."""
        self.encoders_ = [
            CategoricalEncoder(column, encoding).fit(train.get_column(column))
            for column, encoding in self.config.features.encodings.items()
            if column in train.columns
        ]
        encoded = {encoder.column for encoder in self.encoders_}
        self.numeric_names_ = [
            c
            for c, dtype in train.schema.items()
            if c not in (USER_ID, ITEM_ID, "label", "__window")
            and c not in encoded
            and dtype.is_numeric()
        ]
        self.feature_names_ = self.numeric_names_ + [
            name for encoder in self.encoders_ for name in encoder.output_columns
        ]
        self.ranker_ = self._train_ranker(train, valid)

    def _candidate_counts(self) -> dict[str, int]:
        return {
            name: self.config.candidates.get(name, self.config.candidates_per_generator)
            for name in self.config.generators
        }

    def _fit_generators(self, dataset: Dataset) -> dict[str, Recommender[Any]]:
        """Every configured generator fitted on ``dataset``. The first time, a generator that
        refuses these data (EASE over too large a catalogue, content without attributes) is
        left out with a warning; later fits must fit the same generators."""
        fitted: dict[str, Recommender[Any]] = {}
        first = self._left_out is None
        left_out: dict[str, str] = {} if self._left_out is None else self._left_out
        for name, config in self.config.generators.items():
            if name in left_out:
                continue
            try:
                fitted[name] = fit_generator(config, dataset)
            except DataError as exc:
                if not first:
                    raise
                left_out[name] = str(exc)
                self.warnings_.append(f"generator {name} left out: {exc}")
        if not fitted:
            raise DataError(f"no generator of the two-stage model could be fitted: {left_out}")
        self._left_out = left_out
        return fitted

    def _with_features(self, candidates: pl.DataFrame, features: FeatureTables) -> pl.DataFrame:
        frame = (
            candidates.join(features.users, on=USER_ID, how="left")
            .join(features.items, on=ITEM_ID, how="left")
            .join(features.pairs, on=[USER_ID, ITEM_ID], how="left")
        )
        if "item_category" in frame.columns:
            frame = frame.join(features.user_categories, on=[USER_ID, "item_category"], how="left")
        extra = []
        if "item_price" in frame.columns and "user_price_median" in frame.columns:
            extra.append((pl.col("item_price") / pl.col("user_price_median")).alias("price_ratio"))
        extra += taste_expressions(frame.columns)
        extra += candidate_expressions(list(self.config.generators), frame.columns)
        if {"user_lat", "item_lat"} <= set(frame.columns):
            extra.append(
                haversine_km(
                    pl.col("user_lat"), pl.col("user_lon"), pl.col("item_lat"), pl.col("item_lon")
                ).alias("distance_km")
            )
        return frame.with_columns(
            *extra,
            *[pl.col(c).fill_null(0) for c in PAIR_COUNTS if c in frame.columns],
        )

    def _matrix(self, frame: pl.DataFrame) -> np.ndarray:
        columns = [
            (pl.col(name) if name in frame.columns else pl.lit(None)).cast(pl.Float64).alias(name)
            for name in self.numeric_names_
        ]
        for encoder in self.encoders_:
            if encoder.column in frame.columns:
                columns += encoder.transform(frame)
            else:
                columns += [pl.lit(None, pl.Float64).alias(n) for n in encoder.output_columns]
        return frame.select(columns).to_numpy().astype(np.float32)

    def _groups(self, frame: pl.DataFrame) -> np.ndarray:
        return (
            frame.group_by(USER_ID, "__window", maintain_order=True)
            .len()
            .get_column("len")
            .to_numpy()
        )

    def _train_ranker(self, train: pl.DataFrame, valid: pl.DataFrame | None) -> Ranker:
        """LightGBM on the training users, stopped early on the stopping users."""
        import lightgbm

        ranker: Any = lightgbm.LGBMRanker(**self.config.ranker)
        fit_args: dict[str, Any] = {"group": self._groups(train)}
        if valid is not None and valid.height:
            fit_args.update(
                eval_X=(self._matrix(valid),),
                eval_y=(valid.get_column("label").to_numpy(),),
                eval_group=[self._groups(valid)],
                eval_at=[10],
                callbacks=[
                    lightgbm.early_stopping(self.config.early_stopping_rounds, verbose=False)
                ],
            )
        ranker.fit(self._matrix(train), train.get_column("label").to_numpy(), **fit_args)
        best = int(getattr(ranker, "best_iteration_", 0) or 0)
        self._best_iteration = min(max(best, self.config.min_trees), ranker.n_estimators)
        if best and self._best_iteration != best:  # stopped too early to trust: more trees
            ranker = self._refit(train, self._best_iteration)
        elif not best:
            self._best_iteration = 0
        self._remember_importance(ranker)
        trained: Ranker = ranker
        return trained

    def _refit(self, frame: pl.DataFrame, trees: int) -> Ranker:
        """The ranker again on every labelled user, with the number of trees early stopping
        chose: the latest labels are the closest to serving time."""
        import lightgbm

        ranker = lightgbm.LGBMRanker(**{**self.config.ranker, "n_estimators": trees})
        ranker.fit(
            self._matrix(frame), frame.get_column("label").to_numpy(), group=self._groups(frame)
        )
        self._remember_importance(ranker)
        return ranker

    def _remember_importance(self, ranker: Ranker) -> None:
        importance = getattr(ranker, "feature_importances_", None)
        self.feature_importance_ = (
            dict(zip(self.feature_names_, np.asarray(importance).tolist(), strict=True))
            if importance is not None
            else {}
        )

    def _predict(self, frame: pl.DataFrame | None) -> np.ndarray:
        if frame is None or self.ranker_ is None:
            return np.empty(0, np.float32)
        return np.asarray(self.ranker_.predict(self._matrix(frame)), dtype=np.float32)

    @staticmethod
    def _item_info(items: pl.DataFrame, end: datetime) -> pl.DataFrame:
        columns = [pl.col(ITEM_ID)]
        for name in ("category", "price", "available"):
            if name in items.columns:
                columns.append(pl.col(name))
        if "created_at" in items.columns:
            columns.append(
                ((pl.lit(end) - pl.col("created_at")).dt.total_seconds() / 86_400.0).alias(
                    "age_days"
                )
            )
        return items.select(columns)

    def recommend(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        filter: Sequence[str] | None = None,
        history: pl.DataFrame | None = None,
        context: Mapping[str, str] | None = None,
        explain: bool = True,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
    ) -> pl.DataFrame:
        """Each user's list from the ranking pipeline (:mod:`shoprec.ranking.pipeline`), the
        one the API serves: candidates, scored, after the business rules.

        Seen items are excluded when ``exclude_seen`` says so, else as the config's ``seen``
        rule decides (``auto``: only where shoppers rarely buy the same item twice). A user
        without history (or without a candidate) gets the cold-start list of ``context``.
        """
        self._check_fitted()
        if k <= 0:
            raise ShoprecError(f"k must be a positive number of items, not {k}")
        user_ids = [str(u) for u in user_ids]
        exclude = self.exclude_seen_ if exclude_seen is None else exclude_seen
        pipeline = pipeline_for(self)
        allowed = self.allowed_items(category, min_price, max_price, filter)
        memo = scoring_memo_in_use()
        n_items = len(self.item_ids_)
        out_users: list[str] = []
        out_items: list[np.ndarray] = []
        out_scores: list[np.ndarray] = []
        out_reasons: list[str | None] = []
        for start in range(0, len(user_ids), 1000):
            batch = user_ids[start : start + 1000]
            rows, users = self.user_rows(batch, history)
            for position, user_id in enumerate(batch):
                lo, hi = rows.indptr[position], rows.indptr[position + 1]
                row = sp.csr_matrix(
                    (rows.data[lo:hi], rows.indices[lo:hi], [0, hi - lo]), shape=(1, n_items)
                )
                row.sort_indices()  # as the API's rows: explanations break ties by position
                user = int(users[position])
                ranked = None
                if user >= 0 or row.nnz:
                    ranked = pipeline.recommend(
                        user_id,
                        user,
                        row,
                        k,
                        allowed=allowed,
                        exclude_seen=exclude,
                        explain=explain,
                        memo=memo,
                    )
                if ranked is None or ranked.items.size == 0:
                    ranked = pipeline.cold_start(k, allowed, context, row if exclude else None)
                out_users += [user_id] * ranked.items.size
                out_items.append(ranked.items)
                out_scores.append(ranked.scores)
                out_reasons += ranked.reasons or [None] * ranked.items.size
        items = np.concatenate(out_items) if out_items else np.empty(0, np.int64)
        scores = np.concatenate(out_scores) if out_scores else np.empty(0)
        frame = pl.DataFrame(
            {
                USER_ID: out_users,
                ITEM_ID: self.item_ids_.to_external(items),
                "score": pl.Series(scores, dtype=pl.Float64).fill_nan(None),
                "title": [self.titles_[i] for i in items.tolist()],
                "reason": out_reasons,
            },
            schema={
                USER_ID: pl.String,
                ITEM_ID: pl.String,
                "score": pl.Float64,
                "title": pl.String,
                "reason": pl.String,
            },
        )
        return frame.with_columns(
            (pl.int_range(pl.len()).over(USER_ID) + 1).cast(pl.Int64).alias("rank")
        ).select(USER_ID, "rank", ITEM_ID, "score", "title", "reason")

    def allowed_items(
        self,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        only: Sequence[str] | None = None,
    ) -> np.ndarray:
        """The items a list may hold (by item index): available as of the build, in the
        category and price range when asked, among ``only`` when given."""
        info = self.item_info_
        positions = self.item_ids_.to_index(info.get_column(ITEM_ID).to_list())
        known = positions >= 0
        allowed = np.ones(len(self.item_ids_), dtype=bool)
        keep = np.ones(info.height, dtype=bool)
        if "available" in info.columns:
            keep &= info.get_column("available").fill_null(True).to_numpy()
        if category is not None:
            keep &= (
                (info.get_column("category") == category).fill_null(False).to_numpy()
                if "category" in info.columns
                else False
            )
        if min_price is not None or max_price is not None:
            if "price" not in info.columns:
                keep &= False
            else:
                price = info.get_column("price").cast(pl.Float64)
                if min_price is not None:
                    keep &= (price >= min_price).fill_null(False).to_numpy()
                if max_price is not None:
                    keep &= (price <= max_price).fill_null(False).to_numpy()
        allowed[positions[known]] = keep[known]
        if only is not None:
            listed = np.zeros(len(self.item_ids_), dtype=bool)
            index = self.item_ids_.to_index([str(i) for i in only])
            listed[index[index >= 0]] = True
            allowed &= listed
        return allowed

    # -- scoring ---------------------------------------------------------------------------------
    @property
    def scorer_choice(self) -> str:
        """What orders the candidates: ``ranker``, ``fusion`` or a generator's name (runs
        saved before the validation gate: the ranker when there is one)."""
        chosen = getattr(self, "choice_", None)
        if chosen is not None:
            return str(chosen)
        return "ranker" if self.ranker_ is not None else "fusion"

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Scores of the pipeline's lists (users × items; items not listed score nothing):
        the base class's contract, for callers that want a matrix."""
        pipeline = pipeline_for(self)
        allowed = self.allowed_items()
        scores = np.full((rows.shape[0], len(self.item_ids_)), -np.inf, np.float32)
        depth = sum(pipeline.counts.values())
        for position, user in enumerate(users.tolist()):
            row = sp.csr_matrix(rows[position])
            ranked = pipeline.recommend(
                f"\x00row-{position}" if user < 0 else self.user_ids_.to_external([user])[0],
                int(user),
                row,
                depth,
                allowed=allowed,
                exclude_seen=False,
                explain=False,
            )
            # listed items in their order (pinned ones keep their place)
            scores[position, ranked.items] = np.arange(ranked.items.size, 0, -1, dtype=np.float32)
        return scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Similar items come from the first generator that computes them."""
        for model in self.generators_.values():
            if model.supports_similar_items:
                return model._similar(items)
        raise NotImplementedError
