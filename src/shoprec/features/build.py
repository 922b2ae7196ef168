"""Point-in-time feature tables for users, items and user × item pairs.

Every feature is computed from events strictly before ``as_of``: an event at or after the cutoff
(a label of the ranker's training window, say) can never change a feature. Windows count back
from ``as_of``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from shoprec.data.schema import (
    BASKET_ID,
    CATEGORY,
    CREATED_AT,
    EVENT_TYPE,
    ITEM_ID,
    LAT,
    LON,
    PRICE,
    TS,
    USER_ID,
)
from shoprec.features.encoding import Encoding, geohash

__all__ = ["PAIR_COUNTS", "FeatureConfig", "FeatureTables", "compute_features"]

# User × item counts: zero for a pair with no events (the other pair features stay unknown).
PAIR_COUNTS = ("pair_events", "pair_purchases", "pair_recent_purchases")


DEFAULT_ENCODINGS: dict[str, Encoding] = {
    "item_category": "label",
    "item_geohash": "hashing",
    "user_geohash": "hashing",
}


class FeatureConfig(BaseModel):
    """Which counts to compute: event types and windows (days)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_types: list[str] = Field(
        default_factory=lambda: ["view", "add_to_cart", "purchase", "rating", "review"]
    )
    windows_days: list[int] = Field(default_factory=lambda: [7, 30, 3650])
    geohash_precision: int = Field(default=4, ge=1, le=12)
    encodings: dict[str, Encoding] = Field(
        default_factory=lambda: dict(DEFAULT_ENCODINGS),
        description="categorical feature -> label, onehot or hashing",
    )


@dataclass(frozen=True)
class FeatureTables:
    """Features keyed by ``user_id``, ``item_id`` and (``user_id``, ``item_id``)."""

    as_of: datetime
    users: pl.DataFrame
    items: pl.DataFrame
    pairs: pl.DataFrame
    user_categories: pl.DataFrame  # user_id, item_category, user_category_share, _purchases

    @property
    def user_columns(self) -> list[str]:
        return [c for c in self.users.columns if c != USER_ID]

    @property
    def item_columns(self) -> list[str]:
        return [c for c in self.items.columns if c != ITEM_ID]

    @property
    def pair_columns(self) -> list[str]:
        return [c for c in self.pairs.columns if c not in (USER_ID, ITEM_ID)]


def _days_since(moment: datetime) -> pl.Expr:
    return (pl.lit(moment) - pl.col(TS).max()).dt.total_seconds() / 86_400.0


def compute_features(
    events: pl.DataFrame,
    as_of: datetime,
    *,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    config: FeatureConfig | None = None,
) -> FeatureTables:
    """Feature tables as they stood just before ``as_of`` (coordinates from ``items`` and
    ``users`` become geohash cells)."""
    config = config or FeatureConfig()
    past = events.filter(pl.col(TS) < as_of)
    catalogue = _catalogue(items)
    with_category = past.join(
        catalogue.select(ITEM_ID, *([CATEGORY] if CATEGORY in catalogue.columns else [])),
        on=ITEM_ID,
        how="left",
    )
    if CATEGORY not in with_category.columns:
        with_category = with_category.with_columns(pl.lit(None, pl.String).alias(CATEGORY))
    counts = _window_counts(as_of, config)
    users_table = _user_table(past, counts, as_of)
    item_table = _item_table(past, catalogue, counts, as_of, config)
    if users is not None and LAT in users.columns and LON in users.columns:
        users_table = users_table.join(_user_places(users, config), on=USER_ID, how="left")
    pairs = _pair_table(with_category, as_of, config)
    users_table, item_table = _repeat_shares(past, users_table, item_table)
    user_categories = _user_categories(with_category)
    users_table, item_table = _taste_features(past, catalogue, as_of, users_table, item_table)
    return FeatureTables(as_of, users_table, item_table, pairs, user_categories)


_PURCHASES = pl.col(EVENT_TYPE) == "purchase"


def _catalogue(items: pl.DataFrame | None) -> pl.DataFrame:
    """One row per item: its id and whichever of category, price, listing date and place the
    items table has."""
    if items is None:
        return pl.DataFrame(schema={ITEM_ID: pl.String})
    wanted = [c for c in (CATEGORY, PRICE, CREATED_AT, LAT, LON) if c in items.columns]
    return items.select(ITEM_ID, *wanted).unique(ITEM_ID, keep="last")


def _window_counts(as_of: datetime, config: FeatureConfig) -> list[pl.Expr]:
    """Events of each configured type in each window before ``as_of`` (``view_7d``, ...)."""
    return [
        ((pl.col(EVENT_TYPE) == kind) & (pl.col(TS) >= as_of - timedelta(days=days)))
        .sum()
        .alias(f"{kind}_{days}d")
        for kind in config.event_types
        for days in config.windows_days
    ]


def _user_table(past: pl.DataFrame, counts: list[pl.Expr], as_of: datetime) -> pl.DataFrame:
    """Per known user: window counts, recency, the price they pay, baskets and breadth."""
    known = past.filter(pl.col(USER_ID).is_not_null())
    paid = pl.col(PRICE).filter(_PURCHASES)
    return known.group_by(USER_ID).agg(
        *[c.alias(f"user_{c.meta.output_name()}") for c in counts],
        _days_since(as_of).alias("user_days_since_last"),
        paid.median().alias("user_price_median"),
        (paid.quantile(0.75) - paid.quantile(0.25)).alias("user_price_spread"),
        pl.col(BASKET_ID).filter(_PURCHASES).n_unique().alias("user_baskets"),
        pl.col(ITEM_ID).n_unique().alias("user_distinct_items"),
    )


def _item_table(
    past: pl.DataFrame,
    catalogue: pl.DataFrame,
    counts: list[pl.Expr],
    as_of: datetime,
    config: FeatureConfig,
) -> pl.DataFrame:
    """Per item of the catalogue or the events: window counts, distinct users per window,
    recency, trend, funnel rates and the catalogue's own columns as features."""
    touched = past.filter(pl.col(ITEM_ID).is_not_null())
    item_stats = touched.group_by(ITEM_ID).agg(
        *[c.alias(f"item_{c.meta.output_name()}") for c in counts],
        *[
            pl.col(USER_ID)
            .filter(pl.col(TS) >= as_of - timedelta(days=days))
            .n_unique()
            .alias(f"item_users_{days}d")
            for days in config.windows_days
        ],
        _days_since(as_of).alias("item_days_since_last"),
    )
    item_stats = item_stats.with_columns(_item_rates(config))
    item_table = catalogue.join(item_stats, on=ITEM_ID, how="full", coalesce=True)
    return item_table.with_columns(_catalogue_features(item_table, as_of, config)).drop(
        [c for c in (PRICE, CREATED_AT, CATEGORY, LAT, LON) if c in item_table.columns]
    )


def _item_rates(config: FeatureConfig) -> list[pl.Expr]:
    """The item's trend (users in the shortest window against the longest) and its funnel:
    views to carts, carts to purchases (unknown where those types are not counted)."""
    window_short, window_long = min(config.windows_days), max(config.windows_days)
    types = config.event_types
    return [
        (
            pl.col(f"item_users_{window_short}d")
            * (window_long / window_short)
            / (pl.col(f"item_users_{window_long}d") + 1.0)
        ).alias("item_trend"),
        (
            pl.col(f"item_add_to_cart_{window_long}d") / (pl.col(f"item_view_{window_long}d") + 1.0)
        ).alias("item_view_to_cart")
        if "view" in types and "add_to_cart" in types
        else pl.lit(None, pl.Float64).alias("item_view_to_cart"),
        (
            pl.col(f"item_purchase_{window_long}d")
            / (pl.col(f"item_add_to_cart_{window_long}d") + 1.0)
        ).alias("item_cart_to_purchase")
        if "purchase" in types and "add_to_cart" in types
        else pl.lit(None, pl.Float64).alias("item_cart_to_purchase"),
    ]


def _catalogue_features(
    item_table: pl.DataFrame, as_of: datetime, config: FeatureConfig
) -> list[pl.Expr]:
    """The catalogue's columns as item features: price, age in days, category, place and its
    geohash cell."""
    extra = []
    if PRICE in item_table.columns:
        extra.append(pl.col(PRICE).alias("item_price"))
    if CREATED_AT in item_table.columns:
        age = (pl.lit(as_of) - pl.col(CREATED_AT)).dt.total_seconds() / 86_400.0
        extra.append(age.alias("item_age_days"))
    if CATEGORY in item_table.columns:
        extra.append(pl.col(CATEGORY).cast(pl.String).alias("item_category"))
    if LAT in item_table.columns and LON in item_table.columns:
        extra += [pl.col(LAT).alias("item_lat"), pl.col(LON).alias("item_lon")]
        cells = geohash(
            item_table.get_column(LAT).to_numpy(),
            item_table.get_column(LON).to_numpy(),
            config.geohash_precision,
        )
        extra.append(pl.lit(pl.Series("item_geohash", cells, dtype=pl.String)))
    return extra


def _user_places(users: pl.DataFrame, config: FeatureConfig) -> pl.DataFrame:
    """Each user's coordinates and geohash cell."""
    places = users.select(
        USER_ID, pl.col(LAT).alias("user_lat"), pl.col(LON).alias("user_lon")
    ).unique(USER_ID, keep="last")
    return places.with_columns(
        pl.Series(
            "user_geohash",
            geohash(
                places.get_column("user_lat").to_numpy(),
                places.get_column("user_lon").to_numpy(),
                config.geohash_precision,
            ),
            dtype=pl.String,
        )
    )


def _pair_table(
    with_category: pl.DataFrame, as_of: datetime, config: FeatureConfig
) -> pl.DataFrame:
    """Per user × item with events: counts, purchases (all and recent) and recency."""
    recent = as_of - timedelta(days=max(config.windows_days[:-1] or [30]))
    return (
        with_category.filter(pl.col(USER_ID).is_not_null() & pl.col(ITEM_ID).is_not_null())
        .group_by(USER_ID, ITEM_ID)
        .agg(
            pl.len().alias("pair_events"),
            _PURCHASES.sum().alias("pair_purchases"),
            _days_since(as_of).alias("pair_days_since_last"),
            (pl.lit(as_of) - pl.col(TS).filter(_PURCHASES).max())
            .dt.total_seconds()
            .truediv(86_400.0)
            .alias("pair_days_since_purchase"),
            (_PURCHASES & (pl.col(TS) >= recent)).sum().alias("pair_recent_purchases"),
        )
    )


def _repeat_shares(
    past: pl.DataFrame, users_table: pl.DataFrame, item_table: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """How much a user, and an item, is bought again: repeat purchases over all purchases
    (``user_repeat_share``, ``item_repeat_share``)."""
    repeat = (
        past.filter(_PURCHASES & pl.col(USER_ID).is_not_null() & pl.col(ITEM_ID).is_not_null())
        .sort(TS)
        .with_columns((pl.int_range(pl.len()).over(USER_ID, ITEM_ID) > 0).alias("__again"))
    )
    users_table = users_table.join(
        repeat.group_by(USER_ID).agg(pl.col("__again").mean().alias("user_repeat_share")),
        on=USER_ID,
        how="left",
    )
    item_table = item_table.join(
        repeat.group_by(ITEM_ID).agg(pl.col("__again").mean().alias("item_repeat_share")),
        on=ITEM_ID,
        how="left",
    )
    return users_table, item_table


def _user_categories(with_category: pl.DataFrame) -> pl.DataFrame:
    """Per user × category: the category's share of the user's events, and their purchases."""
    return (
        with_category.filter(pl.col(USER_ID).is_not_null() & pl.col(CATEGORY).is_not_null())
        .group_by(USER_ID, CATEGORY)
        .agg(pl.len().alias("__n"), _PURCHASES.sum().alias("user_category_purchases"))
        .select(
            USER_ID,
            pl.col(CATEGORY).cast(pl.String).alias("item_category"),
            (pl.col("__n") / pl.col("__n").sum().over(USER_ID)).alias("user_category_share"),
            pl.col("user_category_purchases").cast(pl.Float64),
        )
    )


def _taste_features(
    past: pl.DataFrame,
    catalogue: pl.DataFrame,
    as_of: datetime,
    users_table: pl.DataFrame,
    item_table: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What a shopper's taste is made of: how much of their activity goes to each category
    (smoothed towards the shop's mix), how popular an item is inside its category, and where
    its price sits among the category's items (a third: cheap, middle, dear) against the price
    bands the shopper touches.

    Items: ``item_category_global_share`` (the category's share of all events),
    ``item_category_pop_share`` (the item's share of its category's events),
    ``item_price_pct`` and ``item_band`` (0, 1, 2). Users: ``user_category_events`` (events on
    items with a category), ``user_price_pct`` (mean price percentile of the items touched) and
    ``user_band{0,1,2}_share`` (smoothed shares of the bands touched).
    """
    if CATEGORY not in catalogue.columns:
        return users_table, item_table
    placed = _price_places(catalogue, as_of)
    touched = past.filter(pl.col(ITEM_ID).is_not_null()).join(placed, on=ITEM_ID, how="inner")
    items = _category_popularity(past, catalogue, placed, touched, as_of)
    item_columns: list[str] = [
        c
        for c in (
            "item_category_global_share",
            "item_category_pop_share",
            "item_category_purchase_share",
            "item_price_pct",
        )
        if c in items.columns
    ]
    if "item_band" in items.columns:
        item_columns.append("item_band")
    item_table = item_table.join(items.select(ITEM_ID, *item_columns), on=ITEM_ID, how="left")
    users_table = users_table.join(_user_taste(touched), on=USER_ID, how="left")
    return users_table, item_table


def _price_places(catalogue: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """The items on sale before ``as_of`` with a category: their category (``__category``)
    and, where priced, their price percentile within it and its third (``item_band``)."""
    listed = catalogue.filter(pl.col(CATEGORY).is_not_null())
    if CREATED_AT in listed.columns:
        listed = listed.filter(pl.col(CREATED_AT).is_null() | (pl.col(CREATED_AT) < as_of))
    columns = [pl.col(ITEM_ID), pl.col(CATEGORY).cast(pl.String).alias("__category")]
    if PRICE in listed.columns:
        priced = pl.col(PRICE).is_not_null()
        percentile = (
            (pl.col(PRICE).rank("average").over(CATEGORY) - 0.5)
            / pl.col(PRICE).count().over(CATEGORY)
        ).alias("item_price_pct")
        columns.append(pl.when(priced).then(percentile))
    placed = listed.select(columns)
    if "item_price_pct" in placed.columns:
        placed = placed.with_columns(
            (pl.col("item_price_pct") * 3).floor().clip(0, 2).alias("item_band")
        )
    return placed


def _category_popularity(
    past: pl.DataFrame,
    catalogue: pl.DataFrame,
    placed: pl.DataFrame,
    touched: pl.DataFrame,
    as_of: datetime,
) -> pl.DataFrame:
    """Each placed item's share of its category's events and purchases per day on sale, and
    its category's share of all events."""
    per_item = touched.group_by(ITEM_ID).agg(
        pl.len().alias("__n"),
        (pl.col(EVENT_TYPE) == "purchase").sum().alias("__p"),
        pl.col(TS).min().alias("__first"),
    )
    # Counts per day on sale: an item listed last week is not less popular than an old one
    # for having had less time to collect events.
    opened = past.get_column(TS).min() if past.height else as_of
    listed_since = pl.col("__first")
    if CREATED_AT in catalogue.columns:
        placed = placed.join(catalogue.select(ITEM_ID, CREATED_AT), on=ITEM_ID, how="left")
        listed_since = pl.coalesce(pl.col(CREATED_AT), listed_since)
    days = (
        (
            ((pl.lit(as_of) - pl.max_horizontal(listed_since, pl.lit(opened))).dt.total_seconds())
            / 86_400.0
        )
        .fill_null(1.0)
        .clip(lower_bound=1.0)
    )
    items = (
        placed.join(per_item, on=ITEM_ID, how="left")
        .with_columns(
            (pl.col("__n").fill_null(0) + 0.5) / days, (pl.col("__p").fill_null(0) + 0.5) / days
        )
        .with_columns(
            (pl.col("__n") / pl.col("__n").sum().over("__category")).alias(
                "item_category_pop_share"
            ),
            (pl.col("__p") / pl.col("__p").sum().over("__category")).alias(
                "item_category_purchase_share"
            ),
        )
    )
    per_category = touched.group_by("__category").agg(pl.len().alias("__c"))
    total = max(touched.height, 1)
    return items.join(per_category, on="__category", how="left").with_columns(
        (pl.col("__c").fill_null(0) / total).alias("item_category_global_share")
    )


def _user_taste(touched: pl.DataFrame) -> pl.DataFrame:
    """Per user: events and purchases on placed items, the mean price percentile of what they
    touch and the smoothed share of each price band."""
    mine = touched.filter(pl.col(USER_ID).is_not_null())
    aggregates = [
        pl.len().alias("user_category_events"),
        (pl.col(EVENT_TYPE) == "purchase").sum().alias("user_category_buys"),
    ]
    if "item_band" in mine.columns:
        aggregates.append(pl.col("item_price_pct").mean().alias("user_price_pct"))
        known = pl.col("item_band").is_not_null().sum() + 3.0
        aggregates += [
            (((pl.col("item_band") == band).sum() + 1.0) / known).alias(f"user_band{band}_share")
            for band in range(3)
        ]
    return mine.group_by(USER_ID).agg(aggregates)
