"""``copurchase-txt``: ``products.txt`` (id, category code, name) + ``transactions.txt`` (JSONL).

``products.txt`` is tab-separated without a header; runs of spaces instead of tabs are tolerated
between the first three fields (the name keeps its inner spaces). Each line of
``transactions.txt`` is ``{"customer", "date": "YYYY.MM.DD HH:MM:SS", "itemList": [{"item",
"price", "quantity"}], "store"}``: one basket, one purchase event per list entry.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, register
from shoprec.data.formats.reading import read_lines
from shoprec.data.report import FILE, LINE, Check, reject_frame, split_rejects
from shoprec.data.schema import (
    BASKET_ID,
    CATEGORY,
    CONTEXT,
    EVENT_TYPE,
    ITEM_ID,
    PRICE,
    TITLE,
    TS,
    TS_DTYPE,
    USER_ID,
    VALUE,
)
from shoprec.exceptions import SourceError

__all__ = ["CopurchaseTxtAdapter"]

_PRODUCT_LINE = r"^\s*(\S+)[ \t]+(\S+)[ \t]+(.*?)\s*$"


class _BadRecordError(ValueError):
    def __init__(self, field: str, problem: str, value: object = None) -> None:
        super().__init__(problem)
        self.field = field
        self.value = "" if value is None else str(value)[:200]


def _number(entry: dict[str, Any], key: str, position: int) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _BadRecordError(
            f"itemList[{position}].{key}", f"{key} is missing or not a number", value
        )
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _BadRecordError(
            f"itemList[{position}].{key}", f"{key} is not a number", value
        ) from None
    if not math.isfinite(number) or number < 0:
        raise _BadRecordError(
            f"itemList[{position}].{key}", f"{key} must be a finite number >= 0", value
        )
    return number


def _transaction(text: str) -> tuple[str, datetime, str | None, list[tuple[str, float, float]]]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadRecordError("", f"bad JSON: {exc.msg}", f"column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # a number of over 4,300 digits; deep nesting
        raise _BadRecordError("", f"bad JSON: {str(exc)[:80]}") from None
    if not isinstance(record, dict):
        raise _BadRecordError("", "a transaction must be a JSON object", type(record).__name__)
    customer = record.get("customer")
    if customer is None or isinstance(customer, bool | dict | list) or str(customer) == "":
        raise _BadRecordError("customer", "missing customer", customer)
    date = record.get("date")
    try:
        ts = datetime.strptime(str(date), "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise _BadRecordError("date", "bad date (expected YYYY.MM.DD HH:MM:SS)", date) from None
    entries = record.get("itemList")
    if not isinstance(entries, list) or not entries:
        raise _BadRecordError("itemList", "itemList must be a non-empty list", entries)
    lines = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("item"):
            raise _BadRecordError(f"itemList[{position}]", "entry without an item", entry)
        lines.append(
            (
                str(entry["item"]),
                _number(entry, "price", position),
                _number(entry, "quantity", position),
            )
        )
    store = record.get("store")
    return str(customer), ts, None if store is None else str(store), lines


@register("copurchase-txt", "products.txt (id, category, name) + transactions.txt (JSON Lines)")
class CopurchaseTxtAdapter:
    name: ClassVar[str] = "copurchase-txt"
    summary: ClassVar[str] = "products.txt + transactions.txt"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        source = SourceData()
        for path in paths:
            lowered = path.name.lower()
            if "product" in lowered:
                source.items = self._products(source, path)
            elif "transaction" in lowered:
                source.events = self._transactions(source, path)
            else:
                raise SourceError(path, "expected products.txt or transactions.txt")
        return source

    @staticmethod
    def _products(source: SourceData, path: Path) -> pl.DataFrame:
        lines = source.take(read_lines(path))
        parts = pl.col("text").str.extract_groups(_PRODUCT_LINE)
        parsed = lines.with_columns(parts.alias("__parts")).unnest("__parts")
        parsed = parsed.rename({"1": ITEM_ID, "2": CATEGORY, "3": TITLE})
        kept, rejects = split_rejects(
            parsed,
            [
                Check(
                    "expected product id, category code and name separated by tabs",
                    "",
                    pl.col(ITEM_ID).is_null(),
                    pl.col("text"),
                )
            ],
            path,
        )
        if rejects.height:
            source.rejects.append(rejects)
        return kept.select(FILE, LINE, ITEM_ID, CATEGORY, pl.col(TITLE).replace("", None))

    @staticmethod
    def _transactions(source: SourceData, path: Path) -> pl.DataFrame:
        lines = source.take(read_lines(path))
        rows: dict[str, list[Any]] = {
            k: [] for k in (LINE, USER_ID, TS, BASKET_ID, ITEM_ID, PRICE, VALUE, CONTEXT)
        }
        bad: list[tuple[int, _BadRecordError]] = []
        for number, text in lines.select(LINE, "text").iter_rows():
            try:
                customer, ts, store, entries = _transaction(text)
            except _BadRecordError as error:
                bad.append((number, error))
                continue
            basket = hashlib.blake2b(text.strip().encode(), digest_size=8).hexdigest()
            context = json.dumps({"store": store}) if store is not None else None
            for item, price, quantity in entries:
                for key, value in zip(
                    rows,
                    (number, customer, ts, basket, item, price, quantity, context),
                    strict=True,
                ):
                    rows[key].append(value)
        for number, problem in bad:
            source.rejects.append(
                reject_frame(
                    path, [number], str(problem), field=problem.field, values=[problem.value]
                )
            )
        return pl.DataFrame(
            rows,
            schema={
                LINE: pl.Int64,
                USER_ID: pl.String,
                TS: TS_DTYPE,
                BASKET_ID: pl.String,
                ITEM_ID: pl.String,
                PRICE: pl.Float64,
                VALUE: pl.Float64,
                CONTEXT: pl.String,
            },
        ).with_columns(pl.lit(str(path)).alias(FILE), pl.lit("purchase").alias(EVENT_TYPE))
