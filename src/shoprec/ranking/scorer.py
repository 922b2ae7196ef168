"""Scoring one user's candidates in milliseconds: the serving path of the two-stage model.

The batch path joins data frames; serving one request cannot afford that. A
:class:`CandidateScorer` lays the same features out once as arrays (items × features, a row
per user, the user's own item pairs) and fills one matrix per request, in the column order
the ranker was trained with, then predicts with LightGBM's booster on one thread and applies the
business rules with NumPy. Its scores equal the batch path's (tested).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from shoprec.data.schema import ITEM_ID, USER_ID
from shoprec.features.build import PAIR_COUNTS
from shoprec.ranking.candidates import TASTE_PRIOR as _PRIOR
from shoprec.ranking.compiled import compile_ranker
from shoprec.ranking.gate import scorer_values
from shoprec.ranking.rules import ItemFacts, apply_rules

if TYPE_CHECKING:
    from shoprec.ranking.fitted import FittedTwoStage

__all__ = ["CandidateScorer", "ScoredList"]

_TASTE_ITEM = (
    "item_band",
    "item_price_pct",
    "item_category_global_share",
    "item_category_pop_share",
    "item_category_purchase_share",
)
_TASTE_USER = (
    "user_category_events",
    "user_category_buys",
    "user_price_pct",
    "user_band0_share",
    "user_band1_share",
    "user_band2_share",
)


@dataclass(frozen=True)
class ScoredList:
    items: np.ndarray  # item indices, best first
    scores: np.ndarray


def _rows(frame: pl.DataFrame, key: str, columns: list[str]) -> dict[str, np.ndarray]:
    if not columns:
        return {}
    values = frame.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy()
    return dict(zip(frame.get_column(key).to_list(), values, strict=True))


def _encoded_columns(model: FittedTwoStage) -> dict[str, pl.Expr]:
    """Each encoded feature's name and the fitted encoder's expression that computes it."""
    encoded: dict[str, pl.Expr] = {}
    for encoder in model.encoders_:
        for expression in encoder.transform(pl.DataFrame()):
            encoded[expression.meta.output_name()] = expression
    return encoded


def _user_pairs(
    model: FittedTwoStage, pair_names: list[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each user's item pairs: their items (sorted indices) and the pair columns, one row each."""
    pairs_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if not pair_names:
        return pairs_of
    pairs = (
        model.features_.pairs.select(USER_ID, ITEM_ID, *pair_names)
        .join(model.item_ids_.index_frame(ITEM_ID, "__item"), on=ITEM_ID, how="inner")
        .sort(USER_ID, "__item")
    )
    owners = pairs.get_column(USER_ID).to_list()
    items_of = pairs.get_column("__item").to_numpy().astype(np.int64)
    values = pairs.select([pl.col(n).cast(pl.Float64) for n in pair_names]).to_numpy()
    # each user's rows are one run of the sorted frame (none when no pair is left)
    bounds = [i for i in range(len(owners)) if i == 0 or owners[i] != owners[i - 1]]
    for start, end in itertools.pairwise([*bounds, len(owners)]):
        pairs_of[owners[start]] = (items_of[start:end], values[start:end])
    return pairs_of


def _category_tables(
    table: pl.DataFrame,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Each user's share of their activity in each category, and their purchases there."""
    shares: dict[str, dict[str, float]] = {}
    purchases: dict[str, dict[str, float]] = {}
    bought = (
        pl.col("user_category_purchases")
        if "user_category_purchases" in table.columns
        else pl.lit(None, pl.Float64)
    )
    for user, category, share, purchased in table.select(
        USER_ID, "item_category", "user_category_share", bought
    ).iter_rows():
        shares.setdefault(user, {})[category] = share
        purchases.setdefault(user, {})[category] = purchased
    return shares, purchases


def _column_plan(
    names: list[str],
    generators: list[str],
    item_names: list[str],
    user_names: list[str],
    pair_names: list[str],
) -> list[tuple[str, Any]]:
    """Where each of the ranker's columns comes from, in its training order: a generator's
    (index, score or rank), an item, user or pair column's position, or a derived feature."""
    generator_columns = {
        f"{g}_{part}": (index, part)
        for index, g in enumerate(generators)
        for part in ("score", "rank")
    }
    plan: list[tuple[str, Any]] = []
    for name in names:
        if name in generator_columns:
            plan.append(("generator", generator_columns[name]))
        elif name in item_names:
            plan.append(("item", item_names.index(name)))
        elif name in user_names:
            plan.append(("user", user_names.index(name)))
        elif name in pair_names:
            plan.append(("pair", pair_names.index(name)))
        else:
            plan.append((name, None))  # derived: price_ratio, distance_km, shares
    return plan


def _plan_blocks(plan: list[tuple[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Where each block of the plan goes: (matrix columns, source columns) per kind, the
    generators' scores and ranks as the ``score`` and ``rank`` blocks."""
    blocks = {
        kind: (
            np.array([c for c, (k, _) in enumerate(plan) if k == kind], np.int64),
            np.array([w for k, w in plan if k == kind], np.int64),
        )
        for kind in ("item", "user", "pair")
    }
    for part in ("score", "rank"):
        chosen = [
            (column, where[0])
            for column, (kind, where) in enumerate(plan)
            if kind == "generator" and where[1] == part
        ]
        blocks[part] = (
            np.array([c for c, _ in chosen], np.int64),
            np.array([g for _, g in chosen], np.int64),
        )
    return blocks


class CandidateScorer:
    """Array-backed features and rules for one fitted two-stage model."""

    def __init__(self, model: FittedTwoStage, *, compiled_cache: Path | None = None) -> None:
        self.model = model
        features = model.features_
        n_items = len(model.item_ids_)
        names = model.feature_names_
        encoded = _encoded_columns(model)
        # Item features in item-index order (encoded columns through the fitted encoders).
        items = pl.DataFrame({ITEM_ID: model.item_ids_.external.tolist()}).join(
            features.items, on=ITEM_ID, how="left"
        )
        self.item_names = [
            n for n in names if (n in items.columns or n in encoded) and n.startswith("item_")
        ]
        self.item_matrix = self._item_matrix(items, encoded, n_items)
        users = features.users
        self.user_names = [
            n
            for n in names
            if n.startswith("user_")
            and (n in users.columns or n in encoded)
            and n != "user_category_share"
        ]
        user_frame = users.select(
            USER_ID,
            *[
                (encoded[n] if n in encoded else pl.col(n).cast(pl.Float64)).alias(n)
                for n in self.user_names
            ],
        )
        self.user_rows = _rows(user_frame, USER_ID, self.user_names)
        self.pair_names = [n for n in names if n.startswith("pair_")]
        self.pairs = _user_pairs(model, self.pair_names)
        self.shares, self.purchases = _category_tables(features.user_categories)
        self._lay_out_categories(items, n_items)
        self.price = self._item_column(items, "item_price")
        self.lat = self._item_column(items, "item_lat")
        self.lon = self._item_column(items, "item_lon")
        self.taste_items = {name: self._item_column(items, name) for name in _TASTE_ITEM}
        taste_users = users.select(
            USER_ID,
            *[
                (pl.col(n) if n in users.columns else pl.lit(None)).cast(pl.Float64).alias(n)
                for n in _TASTE_USER
            ],
        )
        self.taste_users = _rows(taste_users, USER_ID, list(_TASTE_USER))
        self._lay_out_plan(names, list(model.generators_))
        self.booster = getattr(model.ranker_, "booster_", None)
        # The same predictions, compiled (see shoprec.ranking.compiled); LightGBM's otherwise.
        serves_ranker = model.scorer_choice == "ranker"
        self.compiled = (
            compile_ranker(self.booster, compiled_cache)
            if self.booster is not None and serves_ranker
            else None
        )
        self.facts = self._item_facts(model, n_items)
        self.max_price: dict[str, float] = {
            str(user): float(price)
            for user, price in model.user_max_price_.iter_rows()
            if price is not None
        }

    def _item_matrix(
        self, items: pl.DataFrame, encoded: dict[str, pl.Expr], n_items: int
    ) -> np.ndarray:
        """The item features (:attr:`item_names`) of every item, in item-index order."""
        if not self.item_names:
            return np.zeros((n_items, 0))
        return (
            items.select(
                [
                    encoded[n] if n in encoded else pl.col(n).cast(pl.Float64)
                    for n in self.item_names
                ]
            )
            .to_numpy()
            .astype(np.float64)
        )

    def _lay_out_categories(self, items: pl.DataFrame, n_items: int) -> None:
        """Each item's category, also as a code, for per-user category lookups over many items
        at once."""
        category = items.get_column("item_category") if "item_category" in items.columns else None
        self.categories: list[str | None] = (
            category.to_list() if category is not None else [None] * n_items
        )
        self.category_code = {
            name: code for code, name in enumerate({c or "" for c in self.categories})
        }
        self.item_category_code = np.array(
            [self.category_code[c or ""] for c in self.categories], dtype=np.int64
        )

    def _lay_out_plan(self, names: list[str], generators: list[str]) -> None:
        """The ranker's columns in training order (:func:`_column_plan`), their blocks, and
        the item columns in plan order, as the ranker reads them (one row gather per request)."""
        self.plan = _column_plan(
            names, generators, self.item_names, self.user_names, self.pair_names
        )
        self.user_position = {n: i for i, n in enumerate(self.user_names)}
        self.blocks = _plan_blocks(self.plan)
        self.pair_absent = np.array(
            [0.0 if name in PAIR_COUNTS else np.nan for name in self.pair_names], np.float64
        )
        self.item_block = np.ascontiguousarray(
            self.item_matrix[:, self.blocks["item"][1]], dtype=np.float32
        )
        self.derived_columns = [
            (column, kind)
            for column, (kind, _) in enumerate(self.plan)
            if kind not in ("generator", "item", "user", "pair")
        ]

    @staticmethod
    def _item_facts(model: FittedTwoStage, n_items: int) -> ItemFacts:
        """What the rules read of the items, in item-index order."""
        info = model.item_info_
        positions = model.item_ids_.to_index(info.get_column(ITEM_ID).to_list())
        return ItemFacts.of(
            positions,
            n_items,
            info,
            model.config.rules,
            model.tie_rank_,
            {item: i for i, item in enumerate(model.item_ids_.external.tolist())},
        )

    @staticmethod
    def _item_column(items: pl.DataFrame, name: str) -> np.ndarray:
        if name not in items.columns:
            return np.full(items.height, np.nan)
        return items.get_column(name).cast(pl.Float64).to_numpy()

    def features(
        self, user_id: str, items: np.ndarray, scores: np.ndarray, ranks: np.ndarray
    ) -> np.ndarray:
        """The ranker's input for one user's candidates (``scores``/``ranks``: items ×
        generators, NaN where a generator did not propose the item), as float32 as the ranker
        was trained (every value computed in float64, then rounded once)."""
        n = items.size
        user = self.user_rows.get(user_id)
        derived = self._derived(user_id, items, ranks)
        matrix = np.full((n, len(self.plan)), np.nan, np.float32)
        # The array blocks at once: generators' scores and ranks, item, user and pair columns.
        for part, values in (("score", scores), ("rank", ranks)):
            columns, sources = self.blocks[part]
            matrix[:, columns] = values[:, sources]
        matrix[:, self.blocks["item"][0]] = self.item_block[items]
        columns, sources = self.blocks["user"]
        if user is not None:
            matrix[:, columns] = user[sources]
        columns, sources = self.blocks["pair"]
        if columns.size:
            block = np.tile(self.pair_absent, (n, 1))
            known = self.pairs.get(user_id)
            if known is not None:
                paired, values = known
                at = np.minimum(np.searchsorted(paired, items), paired.size - 1)
                hit = paired[at] == items
                block[hit] = values[at[hit]]
            matrix[:, columns] = block[:, sources]
        for column, kind in self.derived_columns:
            if kind == "price_ratio":
                median = (
                    user[self.user_position["user_price_median"]] if user is not None else np.nan
                )
                with np.errstate(divide="ignore", invalid="ignore"):  # as the batch path: inf
                    matrix[:, column] = self.price[items] / median
            elif kind == "distance_km":
                matrix[:, column] = self._distance(user, items)
            elif kind == "user_category_share":
                matrix[:, column] = self._category_share(user_id, items)
            elif kind in derived:
                matrix[:, column] = derived[kind]
        return matrix

    def _category_share(
        self, user_id: str, items: np.ndarray, table: dict[str, dict[str, float]] | None = None
    ) -> np.ndarray:
        shares = (self.shares if table is None else table).get(user_id)
        if not shares:
            return np.full(items.size, np.nan)
        by_code = np.full(len(self.category_code), np.nan)
        for category, value in shares.items():
            code = self.category_code.get(category) if category is not None else None
            if code is not None and value is not None:
                by_code[code] = value
        return np.asarray(by_code[self.item_category_code[items]])

    def _derived(self, user_id: str, items: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
        """The derived candidate and taste features, computed as the batch path's
        ``candidate_expressions`` and ``taste_expressions`` do."""
        out: dict[str, np.ndarray] = {
            "sources": (~np.isnan(ranks)).sum(axis=1).astype(np.float64),
            "rrf": np.where(np.isnan(ranks), 0.0, 1.0 / (60.0 + ranks)).sum(axis=1),
        }
        user = self.taste_users.get(user_id)
        events, buys, user_pct, *bands = user if user is not None else [np.nan] * len(_TASTE_USER)
        item = {name: values[items] for name, values in self.taste_items.items()}
        band = item["item_band"]
        band_share = np.full(items.size, np.nan)
        for b, share in enumerate(bands):
            band_share[band == b] = share
        out["user_band_share"] = band_share
        out["price_pct_gap"] = np.abs(item["item_price_pct"] - user_pct)
        events = 0.0 if np.isnan(events) else events
        share = self._category_share(user_id, items)
        share = np.where(np.isnan(share), 0.0, share)
        affinity = (share * events + _PRIOR * item["item_category_global_share"]) / (
            events + _PRIOR
        )
        weight = np.where(np.isnan(band_share), 1.0 / 3.0, band_share)
        out["user_category_affinity"] = affinity
        out["taste_score"] = affinity * item["item_category_pop_share"] * weight
        out["taste_purchase_score"] = affinity * item["item_category_purchase_share"] * weight
        bought_here = self._category_share(user_id, items, self.purchases)
        out["user_category_purchases"] = bought_here
        buys = 0.0 if np.isnan(buys) else buys
        bought = np.where(np.isnan(bought_here), 0.0, bought_here)
        buy_affinity = (bought + _PRIOR * affinity) / (buys + _PRIOR)
        out["user_category_buy_affinity"] = buy_affinity
        out["taste_buy_score"] = buy_affinity * item["item_category_purchase_share"] * weight
        return out

    def _distance(self, user: np.ndarray | None, items: np.ndarray) -> np.ndarray:
        if user is None or "user_lat" not in self.user_position:
            return np.full(items.size, np.nan)
        lat1 = np.radians(user[self.user_position["user_lat"]])
        lon1 = np.radians(user[self.user_position["user_lon"]])
        lat2, lon2 = np.radians(self.lat[items]), np.radians(self.lon[items])
        a = (
            np.sin((lat2 - lat1) / 2) ** 2
            + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
        )
        return np.asarray(2 * 6371.0 * np.arcsin(np.sqrt(a)))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The ranker's scores of feature rows (:meth:`features`), compiled where it could be."""
        if self.compiled is not None:
            return self.compiled(matrix)
        assert self.booster is not None
        return np.asarray(self.booster.predict(matrix, num_threads=1))

    def score(
        self,
        user_id: str,
        items: np.ndarray,
        scores: np.ndarray,
        ranks: np.ndarray,
        k: int,
        *,
        memo: dict[Any, Any] | None = None,
    ) -> ScoredList:
        """Order one user's candidates by the model's scorer and apply the rules:
        availability and blocks, the price guard, the freshness boost, the diversity cap and
        pinned positions (ties go to the more popular item, then the lower item id, as in
        every model's lists). ``memo`` keeps the ranker's predictions for scoring again."""
        choice = self.model.scorer_choice
        predict = None
        if choice == "ranker":
            key = ("ranker", user_id, items.tobytes())
            predicted_before = None if memo is None else memo.get(key)

            def predict() -> np.ndarray:
                if predicted_before is not None:
                    return np.asarray(predicted_before)
                values = self.predict(self.features(user_id, items, scores, ranks))
                if memo is not None:
                    memo[key] = values
                return np.asarray(values)

        predicted = scorer_values(choice, ranks, list(self.model.generators_), predict)
        # in float32, as the batch scores were: equal scores tie the same way everywhere
        predicted = predicted.astype(np.float32).astype(np.float64)
        picked, values = apply_rules(
            items,
            predicted,
            k,
            self.model.config.rules,
            self.facts,
            max_price=self.max_price.get(user_id),
        )
        return ScoredList(picked, values)
