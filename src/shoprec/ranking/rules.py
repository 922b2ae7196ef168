"""Business rules applied after ranking, in order:

1. drop blocked items, unavailable items, items outside the request's category or price range,
   seen items when seen items are excluded, and items priced far above what the user pays;
2. boost new items;
3. cap how many items of one category a list may hold (diversity);
4. put pinned items at their positions.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RulesConfig", "apply_rules"]


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exclude_seen: bool = False
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


def apply_rules(
    ranked: pl.DataFrame,
    items: pl.DataFrame,
    k: int,
    config: RulesConfig,
    *,
    seen: pl.DataFrame | None = None,
    user_max_price: pl.DataFrame | None = None,
    category: str | None = None,
    min_price: float | None = None,
    max_price: float | None = None,
) -> pl.DataFrame:
    """Apply the rules to ranked candidates and keep ``k`` items per user.

    ``ranked`` has ``user_id, item_id, score`` (any order); ``items`` has ``item_id`` and
    optionally ``category``, ``price``, ``available`` and ``age_days``; ``seen`` lists
    ``user_id, item_id`` pairs; ``user_max_price`` has ``user_id, max_price``. Returns
    ``user_id, rank, item_id, score`` with ranks 1..k (pinned items with score null).
    """
    info = items.select(
        "item_id",
        *[c for c in ("category", "price", "available", "age_days") if c in items.columns],
    )
    frame = ranked.select("user_id", "item_id", "score").join(info, on="item_id", how="left")
    keep = ~pl.col("item_id").is_in(config.blocked + list(config.pinned))
    if config.require_available and "available" in frame.columns:
        keep &= pl.col("available").fill_null(True)
    if category is not None:
        keep &= pl.col("category") == category if "category" in frame.columns else pl.lit(False)
    if (min_price is not None or max_price is not None) and "price" not in frame.columns:
        keep &= pl.lit(False)
    if min_price is not None and "price" in frame.columns:
        keep &= pl.col("price") >= min_price
    if max_price is not None and "price" in frame.columns:
        keep &= pl.col("price") <= max_price
    frame = frame.filter(keep)
    if config.exclude_seen and seen is not None and seen.height:
        frame = frame.join(seen.select("user_id", "item_id"), on=["user_id", "item_id"], how="anti")
    if config.price_guard is not None and user_max_price is not None and "price" in frame.columns:
        frame = (
            frame.join(user_max_price, on="user_id", how="left")
            .filter(
                pl.col("max_price").is_null()
                | pl.col("price").is_null()
                | (pl.col("price") <= pl.col("max_price") * config.price_guard)
            )
            .drop("max_price")
        )
    if config.freshness_boost > 0 and "age_days" in frame.columns:
        frame = frame.with_columns(
            pl.when(pl.col("age_days") < config.freshness_days)
            .then(pl.col("score") + config.freshness_boost)
            .otherwise(pl.col("score"))
            .alias("score")
        )
    frame = frame.sort(["user_id", "score", "item_id"], descending=[False, True, False])
    if config.max_per_category is not None and "category" in frame.columns:
        frame = frame.filter(
            pl.int_range(pl.len()).over("user_id", pl.col("category").fill_null("\x00"))
            < config.max_per_category
        )
    # A pin never overrides a block or unavailability.
    unavailable: set[str] = set()
    if config.require_available and "available" in info.columns:
        unavailable = set(info.filter(~pl.col("available").fill_null(True))["item_id"])
    pinned = {
        item: position
        for item, position in config.pinned.items()
        if position <= k and item not in config.blocked and item not in unavailable
    }
    free = k - len(pinned)
    chosen = frame.filter(pl.int_range(pl.len()).over("user_id") < max(free, 0))
    users = ranked.select("user_id").unique(maintain_order=True)
    if pinned:
        pins = users.join(
            pl.DataFrame({"item_id": list(pinned), "__position": list(pinned.values())}),
            how="cross",
        ).with_columns(pl.lit(None, pl.Float64).alias("score"))
        chosen = chosen.with_columns(pl.lit(None, pl.Int64).alias("__position"))
        chosen = _place_pins(
            chosen.select("user_id", "item_id", "score", "__position"),
            pins.select("user_id", "item_id", "score", "__position"),
        )
    else:
        chosen = chosen.with_columns(
            (pl.int_range(pl.len()).over("user_id") + 1).alias("__position")
        )
    return chosen.select(
        "user_id", pl.col("__position").cast(pl.Int64).alias("rank"), "item_id", "score"
    ).sort("user_id", "rank")


def _place_pins(free: pl.DataFrame, pins: pl.DataFrame) -> pl.DataFrame:
    """Pinned items take their positions; the free items fill the other slots in order."""
    rows = []
    pinned_by_user: dict[str, dict[int, tuple[str, float | None]]] = {}
    for user, item, score, position in pins.iter_rows():
        pinned_by_user.setdefault(user, {})[position] = (item, score)
    free_by_user: dict[str, list[tuple[str, float | None]]] = {}
    for user, item, score, _ in free.iter_rows():
        free_by_user.setdefault(user, []).append((item, score))
    for user, slots in pinned_by_user.items():
        queue = free_by_user.get(user, [])
        position, taken = 1, 0
        total = len(slots) + len(queue)
        while position <= total:
            if position in slots:
                item, score = slots[position]
            elif taken < len(queue):
                item, score = queue[taken]
                taken += 1
            else:  # fewer free items than slots: later pins move up
                remaining = sorted(p for p in slots if p > position)
                if not remaining:
                    break
                slots[position] = slots.pop(remaining[0])
                continue
            rows.append((user, item, score, position))
            position += 1
    return pl.DataFrame(
        rows,
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "score": pl.Float64,
            "__position": pl.Int64,
        },
        orient="row",
    )
