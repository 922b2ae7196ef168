"""A small real catalogue for the enrichment tests: the first products of Instacart's, ingested
into a workspace with the ``instacart-products`` adapter."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.data.lake import Lake

runner = CliRunner()


def ingest_instacart(shared_data: Path, workspace: Path, products: int = 1_500) -> pl.DataFrame:
    """The first ``products`` Instacart products in ``workspace``'s lake; returns the items."""
    source = shared_data / "instacart-products"
    folder = workspace.parent / "instacart-sample"
    folder.mkdir(parents=True, exist_ok=True)
    lines = (source / "products.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "products.csv").write_text("".join(lines[: products + 1]), encoding="utf-8")
    for name in ("aisles.csv", "departments.csv"):
        (folder / name).write_bytes((source / name).read_bytes())
    result = runner.invoke(
        app,
        [
            "ingest",
            "-f",
            "instacart-products",
            "-w",
            str(workspace),
            *(str(folder / name) for name in ("products.csv", "aisles.csv", "departments.csv")),
        ],
    )
    assert result.exit_code == 0, result.output
    items = Lake(workspace).items()
    assert items.height == products
    return items


def change_title(workspace: Path, item_id: str, title: str) -> None:
    """Upsert one item of the lake with a new title."""
    lake = Lake(workspace)
    row = (
        lake.items().filter(pl.col("item_id") == item_id).with_columns(pl.lit(title).alias("title"))
    )
    assert row.height == 1
    lake.append(items=row)
