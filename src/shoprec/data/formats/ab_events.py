"""``ab-events``: an analytics event log (``platform, utc_event_time, utc_event_date, user_id,
event_type, ecom.price100, ecom.qty, ecom.nm``, optionally ``main_category, sub_category``).

List cells such as ``[27700]`` or ``[1, 2]`` hold one value per item of the row and are exploded
in parallel: ``ecom.nm`` the item ids, ``ecom.price100`` prices in hundredths, ``ecom.qty``
quantities. ``user_engagement`` and ``pageview`` rows are visit events without items. An empty
``utc_event_time`` falls back to ``utc_event_date``. A purchase row is one basket.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, register
from shoprec.data.formats.reading import read_delimited
from shoprec.data.report import FILE, LINE, Check, split_rejects
from shoprec.data.schema import (
    BASKET_ID,
    CATEGORY,
    CONTEXT,
    EVENT_TYPE,
    ITEM_ID,
    PRICE,
    TS,
    USER_ID,
    VALUE,
    parse_timestamps,
    stable_hash,
)

__all__ = ["EVENT_TYPES", "AbEventsAdapter"]

REQUIRED = (
    "platform",
    "utc_event_time",
    "utc_event_date",
    "user_id",
    "event_type",
    "ecom.price100",
    "ecom.qty",
    "ecom.nm",
)
EVENT_TYPES = {
    "ec.view_item": "view",
    "ec.add_to_cart": "add_to_cart",
    "ec.purchase": "purchase",
    "user_engagement": "engagement",
    "pageview": "pageview",
}
_ITEM_EVENTS = ("ec.view_item", "ec.add_to_cart", "ec.purchase")
_LIST_COLUMNS = {"ecom.nm": "__items", "ecom.price100": "__prices", "ecom.qty": "__qty"}


def _list_cell(column: str) -> pl.Expr:
    """``"[1, 2]"`` -> ``["1", "2"]``; a blank cell or ``[]`` -> ``[]``; no brackets -> null."""
    text = pl.col(column).fill_null("[]").str.strip_chars()
    inner = text.str.extract(r"^\[(.*)\]$", 1)
    return (
        inner.str.split(",")
        .list.eval(pl.element().str.strip_chars().str.strip_chars("'\""))
        .list.eval(pl.element().filter(pl.element() != ""))
    )


def _not_numbers(list_column: str) -> pl.Expr:
    return (
        pl.col(list_column)
        .list.eval(pl.element().cast(pl.Float64, strict=False).is_null())
        .list.any()
    )


@register("ab-events", "analytics event log with list-valued ecom.* cells")
class AbEventsAdapter:
    name: ClassVar[str] = "ab-events"
    summary: ClassVar[str] = "analytics event log"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        source = SourceData()
        frames = []
        for path in paths:
            frame = source.take(read_delimited(path, required=REQUIRED))
            for optional in ("main_category", "sub_category"):
                if optional not in frame.columns:
                    frame = frame.with_columns(pl.lit(None, pl.String).alias(optional))
            time = parse_timestamps(frame.get_column("utc_event_time"))
            date = parse_timestamps(frame.get_column("utc_event_date"), ["%Y-%m-%d"])
            frame = frame.with_columns(
                time.alias("__time"),
                date.alias("__date"),
                *[_list_cell(src).alias(dst) for src, dst in _LIST_COLUMNS.items()],
            )
            kept, rejects = split_rejects(frame, self._checks(), path)
            if rejects.height:
                source.rejects.append(rejects)
            frames.append(kept)
        rows = pl.concat(frames, how="vertical")
        rows = rows.with_columns(
            pl.coalesce("__time", "__date").alias(TS),
            pl.col("event_type").str.strip_chars().replace_strict(EVENT_TYPES).alias(EVENT_TYPE),
            stable_hash(
                [pl.col(c) for c in ("user_id", "utc_event_time", "utc_event_date", "ecom.nm")],
                length=16,
            ).alias("__row"),
        )
        visits = rows.filter(pl.col(EVENT_TYPE).is_in(["engagement", "pageview"]))
        with_items = rows.filter(~pl.col(EVENT_TYPE).is_in(["engagement", "pageview"]))
        with_items = with_items.with_columns(
            pl.when(pl.col("__prices").list.len() == 0)
            .then(pl.col("__items").list.eval(pl.lit(None, pl.String)))
            .otherwise(pl.col("__prices"))
            .alias("__prices"),
            pl.when(pl.col("__qty").list.len() == 0)
            .then(pl.col("__items").list.eval(pl.lit(None, pl.String)))
            .otherwise(pl.col("__qty"))
            .alias("__qty"),
            (pl.col("__items").list.len() == 1).alias("__single"),
        ).explode("__items", "__prices", "__qty")
        category = pl.concat_str(
            ["main_category", "sub_category"], separator="/", ignore_nulls=True
        )
        common = [
            pl.col(FILE),
            pl.col(LINE),
            pl.col("user_id").str.strip_chars().alias(USER_ID),
            pl.col(EVENT_TYPE),
            pl.col(TS),
            pl.struct(pl.col("platform")).struct.json_encode().alias(CONTEXT),
        ]
        item_events = with_items.select(
            *common,
            pl.col("__items").alias(ITEM_ID),
            (pl.col("__prices").cast(pl.Float64) / 100).round(2).alias(PRICE),
            pl.col("__qty").cast(pl.Float64).alias(VALUE),
            pl.when(pl.col(EVENT_TYPE) == "purchase").then(pl.col("__row")).alias(BASKET_ID),
            category.alias(CATEGORY),
            pl.col("__single"),
        )
        source.events = pl.concat(
            [item_events.drop(CATEGORY, "__single"), visits.select(*common)],
            how="diagonal_relaxed",
        )
        source.items = (
            item_events.sort(TS)
            .group_by(ITEM_ID)
            .agg(
                # A row's category describes its items only when it has one item.
                pl.coalesce(
                    pl.col(CATEGORY).filter(pl.col("__single")).drop_nulls().last(),
                    pl.col(CATEGORY).drop_nulls().last(),
                ),
                pl.col(PRICE).drop_nulls().last(),
            )
        )
        return source

    @staticmethod
    def _checks() -> list[Check]:
        event_type = pl.col("event_type").str.strip_chars()
        item_event = event_type.is_in(_ITEM_EVENTS)
        n_items = pl.col("__items").list.len()
        return [
            Check("missing user_id", "user_id", pl.col("user_id").is_null()),
            Check(
                "unknown event type",
                "event_type",
                event_type.is_null() | ~event_type.is_in(list(EVENT_TYPES)),
            ),
            Check(
                "bad utc_event_time",
                "utc_event_time",
                pl.col("utc_event_time").is_not_null() & pl.col("__time").is_null(),
            ),
            Check(
                "bad or missing utc_event_date (expected YYYY-MM-DD)",
                "utc_event_date",
                pl.col("__time").is_null() & pl.col("__date").is_null(),
            ),
            *[
                Check(f"{src} is not a [..] list", src, pl.col(dst).is_null())
                for src, dst in _LIST_COLUMNS.items()
            ],
            Check("item event without items in ecom.nm", "ecom.nm", item_event & (n_items == 0)),
            *[
                Check(f"{src} has a non-numeric element", src, _not_numbers(dst))
                for src, dst in (("ecom.price100", "__prices"), ("ecom.qty", "__qty"))
            ],
            *[
                Check(
                    f"{src} has a negative element",
                    src,
                    pl.col(dst)
                    .list.eval(pl.element().cast(pl.Float64, strict=False) < 0)
                    .list.any(),
                )
                for src, dst in (("ecom.price100", "__prices"), ("ecom.qty", "__qty"))
            ],
            *[
                Check(
                    f"{src} has a different length than ecom.nm",
                    src,
                    item_event & (pl.col(dst).list.len() > 0) & (pl.col(dst).list.len() != n_items),
                )
                for src, dst in (("ecom.price100", "__prices"), ("ecom.qty", "__qty"))
            ],
        ]
