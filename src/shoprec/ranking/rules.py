"""Business rules applied after ranking, in order:

1. drop blocked and unavailable items and items priced far above what the user pays (items
   outside a request's category or price range, and seen items where lists leave them out, are
   never candidates: see :mod:`shoprec.ranking.pipeline`);
2. boost new items;
3. cap how many items of one category a list may hold (diversity);
4. put pinned items at their positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ItemFacts", "RulesConfig", "apply_rules"]


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    require_available: bool = True
    blocked: list[str] = Field(default_factory=list)
    pinned: dict[str, int] = Field(
        default_factory=dict, description="item id -> 1-based position in every list"
    )
    max_per_category: int | None = Field(default=None, ge=1)
    freshness_days: float = Field(default=14.0, gt=0)
    freshness_boost: float = Field(default=0.0, ge=0, description="added to new items' scores")
    price_guard: float | None = Field(
        default=None,
        gt=0,
        description="drop items dearer than this many times the highest price the user paid",
    )


@dataclass(frozen=True)
class ItemFacts:
    """What the rules read of the catalogue, by item index."""

    unavailable: np.ndarray  # bool: not available, or blocked
    category: list[str | None]
    price: np.ndarray  # NaN where unknown
    age_days: np.ndarray  # inf where unknown
    tie_rank: np.ndarray  # equal scores: the lower tie rank first
    pins: dict[int, int] = field(default_factory=dict)  # item index -> 1-based position

    @classmethod
    def of(
        cls,
        item_index: np.ndarray,
        n_items: int,
        info: pl.DataFrame,
        config: RulesConfig,
        tie_rank: np.ndarray,
        index_of: dict[str, int],
    ) -> ItemFacts:
        """Facts from an item table (``item_id`` plus optional ``available``, ``category``,
        ``price``, ``age_days``) whose rows are items ``item_index`` (-1: not a model item)."""
        known = item_index >= 0
        where = item_index[known]

        def column(name: str, missing: float) -> np.ndarray:
            values = np.full(n_items, missing)
            if name in info.columns:
                read = info.get_column(name).cast(pl.Float64).fill_null(missing).to_numpy()
                values[where] = read[known]
            return values

        unavailable = np.zeros(n_items, dtype=bool)
        if config.require_available and "available" in info.columns:
            available = info.get_column("available").fill_null(True).to_numpy()
            unavailable[where] = ~available[known]
        for item in config.blocked:
            if item in index_of:
                unavailable[index_of[item]] = True
        category: list[str | None] = [None] * n_items
        if "category" in info.columns:
            for position, name in zip(
                item_index.tolist(),
                info.get_column("category").cast(pl.String).to_list(),
                strict=True,
            ):
                if position >= 0:
                    category[position] = name
        pins = {
            index_of[item]: slot
            for item, slot in config.pinned.items()
            if item in index_of and not unavailable[index_of[item]]
        }
        return cls(
            unavailable,
            category,
            column("price", np.nan),
            column("age_days", np.inf),
            tie_rank,
            pins,
        )


def apply_rules(
    items: np.ndarray,
    scores: np.ndarray,
    k: int,
    config: RulesConfig,
    facts: ItemFacts,
    *,
    max_price: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One user's ``k`` items from scored candidates (item indices and scores): the rules in
    the module's order. Pinned items take their positions with a NaN score (a list has no
    holes: with too few other items a pin moves up). ``max_price`` is the highest price the
    user paid (for the price guard)."""
    keep = ~facts.unavailable[items]
    if config.price_guard is not None and max_price is not None:
        keep &= ~(facts.price[items] > max_price * config.price_guard)
    keep &= ~np.isin(items, list(facts.pins))
    items, scores = items[keep], np.asarray(scores, np.float64)[keep]
    if config.freshness_boost > 0:
        fresh = facts.age_days[items] < config.freshness_days
        scores = scores + np.where(fresh, config.freshness_boost, 0.0)
    order = np.lexsort((facts.tie_rank[items], -scores))
    pins = {item: slot for item, slot in facts.pins.items() if slot <= k}
    free = max(k - len(pins), 0)
    chosen: list[int] = []
    per_category: dict[str | None, int] = {}
    for position in order:
        if len(chosen) >= free:
            break
        if config.max_per_category is not None:
            category = facts.category[int(items[position])]
            if per_category.get(category, 0) >= config.max_per_category:
                continue
            per_category[category] = per_category.get(category, 0) + 1
        chosen.append(int(position))
    picked, values = items[chosen].astype(np.int64), scores[chosen]
    for item, slot in sorted(pins.items(), key=lambda pair: pair[1]):
        at = min(slot - 1, picked.size)
        picked = np.insert(picked, at, item)
        values = np.insert(values, at, np.nan)
    return picked[:k], values[:k]
