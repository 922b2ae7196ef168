"""What a workspace lake holds, in numbers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from shoprec.data.lake import Lake
from shoprec.data.schema import BASKET_ID, ENTITY_TYPE, EVENT_TYPE, ITEM_ID, TS, USER_ID
from shoprec.exceptions import LakeError

__all__ = ["lake_summary"]


def lake_summary(workspace: Path | str) -> dict[str, object]:
    """Counts of items, users and events (by type), baskets and the time range."""
    lake = Lake(workspace)
    if not lake.root.is_dir():
        raise LakeError(f"{lake.root}: no lake here; run 'shoprec ingest' first")
    items = lake.items()
    users = lake.users()
    stats = (
        lake.scan_events()
        .select(
            pl.len().alias("events"),
            pl.col(USER_ID).n_unique().alias("users"),
            pl.col(ITEM_ID).n_unique().alias("items"),
            pl.col(BASKET_ID).drop_nulls().n_unique().alias("baskets"),
            pl.col(TS).min().alias("first"),
            pl.col(TS).max().alias("last"),
        )
        .collect()
        .row(0, named=True)
    )
    by_type = lake.scan_events().group_by(EVENT_TYPE).len().sort("len", descending=True).collect()
    by_entity = items.group_by(ENTITY_TYPE).len().sort(ENTITY_TYPE)
    return {
        "items in catalogue": items.height,
        "items by entity type": dict(by_entity.iter_rows()),
        "users in user table": users.height,
        "events": stats["events"],
        "events by type": dict(by_type.iter_rows()),
        "users with events": stats["users"] - (1 if _has_null_user(lake) else 0),
        "items with events": stats["items"],
        "baskets": stats["baskets"],
        "first event": _when(stats["first"]),
        "last event": _when(stats["last"]),
        "event partitions (days)": len(lake.event_files()),
    }


def _has_null_user(lake: Lake) -> bool:
    return bool(lake.scan_events().select(pl.col(USER_ID).is_null().any()).collect().item())


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
