"""``online-retail``: the UCI Online Retail invoice lines (one CSV, one row per invoice line).

Each invoice is a basket. A ``C…`` invoice or a negative quantity is a return; a row without a
customer is a guest purchase, kept (with its basket) for co-purchase but not as a user. Times are
UK local time and are stored in UTC. Items take the latest non-empty description as their title
and the latest positive unit price as their price.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, register
from shoprec.data.formats.reading import read_delimited
from shoprec.data.report import Check, split_rejects
from shoprec.data.schema import (
    BASKET_ID,
    CONTEXT,
    CREATED_AT,
    EVENT_TYPE,
    ITEM_ID,
    PRICE,
    TITLE,
    TS,
    USER_ID,
    VALUE,
    parse_float,
    parse_float_failed,
)

__all__ = ["OnlineRetailAdapter"]

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
_LOCAL_TZ = "Europe/London"


@register("online-retail", "UCI Online Retail invoice lines (CSV)")
class OnlineRetailAdapter:
    name: ClassVar[str] = "online-retail"
    summary: ClassVar[str] = "UCI Online Retail invoice lines (CSV)"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        source = SourceData()
        events = []
        for path in paths:
            frame = source.take(read_delimited(path, required=COLUMNS))
            kept, rejects = split_rejects(frame.with_columns(self._parsed()), self._checks(), path)
            if rejects.height:
                source.rejects.append(rejects)
            events.append(kept)
        lines = pl.concat(events, how="vertical")
        source.events = lines.select(
            "_file",
            "_line",
            pl.col("__customer").alias(USER_ID),
            pl.col("StockCode").str.strip_chars().alias(ITEM_ID),
            pl.when(pl.col("InvoiceNo").str.starts_with("C") | (pl.col("__quantity") < 0))
            .then(pl.lit("return"))
            .otherwise(pl.lit("purchase"))
            .alias(EVENT_TYPE),
            pl.col("__ts").alias(TS),
            pl.col("__quantity").abs().alias(VALUE),
            pl.col("__price").alias(PRICE),
            pl.col("InvoiceNo").str.strip_chars().alias(BASKET_ID),
            pl.struct(pl.col("Country").alias("country")).struct.json_encode().alias(CONTEXT),
        )
        source.items = self._items(lines)
        return source

    @staticmethod
    def _parsed() -> list[pl.Expr]:
        customer = pl.col("CustomerID").str.strip_chars()
        return [
            parse_float("Quantity").alias("__quantity"),
            parse_float("UnitPrice").alias("__price"),
            pl.col("InvoiceDate")
            .str.strip_chars()
            .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
            .dt.replace_time_zone(_LOCAL_TZ, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
            .alias("__ts"),
            customer.str.replace(r"\.0+$", "").alias("__customer"),
        ]

    @staticmethod
    def _checks() -> list[Check]:
        quantity = pl.col("__quantity")
        return [
            Check("missing invoice number", "InvoiceNo", pl.col("InvoiceNo").is_null()),
            Check("missing stock code", "StockCode", pl.col("StockCode").is_null()),
            Check("quantity is not a number", "Quantity", parse_float_failed("Quantity")),
            Check(
                "quantity is not a whole number",
                "Quantity",
                quantity.is_not_null() & (quantity != quantity.round(0)),
            ),
            Check("missing quantity", "Quantity", quantity.is_null()),
            Check(
                "bad invoice date (expected YYYY-MM-DD HH:MM:SS)",
                "InvoiceDate",
                pl.col("__ts").is_null(),
            ),
            Check("unit price is not a number", "UnitPrice", parse_float_failed("UnitPrice")),
            Check(
                "customer id is not a number",
                "CustomerID",
                pl.col("__customer").is_not_null() & ~pl.col("__customer").str.contains(r"^\d+$"),
            ),
        ]

    @staticmethod
    def _items(lines: pl.DataFrame) -> pl.DataFrame:
        """One row per stock code: title, latest positive price, first sale.

        The title is the description used most often on sale lines (latest wins a tie): the
        file also writes notes such as "check" or "damages" into descriptions of adjustment
        lines, and the latest description is often one of them.
        """
        item = pl.col("StockCode").str.strip_chars().alias(ITEM_ID)
        description = pl.col("Description").str.strip_chars()
        sale = (pl.col("__price") > 0) & (pl.col("__quantity") > 0)
        named = lines.filter(description.str.len_chars() > 0).with_columns(
            item, description.alias(TITLE), sale.alias("__sale")
        )
        titles = (
            named.group_by(ITEM_ID, TITLE)
            .agg(
                pl.col("__sale").sum().alias("__sales"),
                pl.len().alias("__uses"),
                pl.col("__ts").max().alias("__latest"),
            )
            .sort(["__sales", "__uses", "__latest", TITLE], descending=True)
            .group_by(ITEM_ID, maintain_order=True)
            .first()
            .select(ITEM_ID, TITLE)
        )
        ordered = lines.with_columns(item).sort("__ts", "_line")
        facts = ordered.group_by(ITEM_ID).agg(
            pl.col("__price").filter(pl.col("__price") > 0).last().alias(PRICE),
            pl.col("__ts").min().alias(CREATED_AT),
        )
        return facts.join(titles, on=ITEM_ID, how="left")
