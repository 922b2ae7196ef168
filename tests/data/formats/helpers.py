"""Small helpers shared by the adapter tests."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprec.data.lake import Lake
from shoprec.data.report import LoadReport


def reasons(report: LoadReport) -> dict[int, str]:
    """Rejected line -> reason (the first reason of each line)."""
    frame = report.rejects.unique("line", keep="first", maintain_order=True)
    return dict(zip(frame["line"].to_list(), frame["reason"].to_list(), strict=True))


def lake_events(workspace: Path) -> pl.DataFrame:
    return Lake(workspace).events().sort("ts", "item_id")
