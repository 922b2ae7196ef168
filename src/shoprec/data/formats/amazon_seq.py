"""``amazon-seq``: sequential-recommendation files, one user per line (``user item item …``,
items in time order), with an optional ``*_item2attributes.json`` (``{"item": [attr, …]}``).

The files carry no timestamps, only order. Each user's k-th item (k from 0) gets the timestamp
``2014-01-01T00:00:00Z + k seconds``, which keeps the order for time-based splits and
leave-last-out evaluation; the events are ``review`` events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, register
from shoprec.data.formats.reading import read_bytes, read_lines
from shoprec.data.report import FILE, LINE, Check, split_rejects
from shoprec.data.schema import ATTRIBUTES, EVENT_TYPE, ITEM_ID, TEXT, TS, TS_DTYPE, USER_ID
from shoprec.exceptions import SourceError

__all__ = ["SEQUENCE_EPOCH", "AmazonSeqAdapter"]

SEQUENCE_EPOCH = datetime(2014, 1, 1, tzinfo=UTC)


@register("amazon-seq", "one user per line with items in time order (+ item2attributes.json)")
class AmazonSeqAdapter:
    name: ClassVar[str] = "amazon-seq"
    summary: ClassVar[str] = "sequences + item attributes"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        source = SourceData()
        events, items = [], []
        for path in paths:
            if path.suffix.lower() == ".json":
                items.append(self._attributes(source, path))
            else:
                events.append(self._sequences(source, path))
        if events:
            source.events = pl.concat(events, how="vertical")
        if items:
            source.items = pl.concat(items, how="vertical")
        return source

    @staticmethod
    def _sequences(source: SourceData, path: Path) -> pl.DataFrame:
        frame = source.take(read_lines(path))
        tokens = (
            pl.col("text")
            .str.strip_chars()
            .str.split(" ")
            .list.eval(pl.element().filter(pl.element() != ""))
        )
        frame = frame.with_columns(tokens.alias("__tokens"))
        kept, rejects = split_rejects(
            frame,
            [
                Check(
                    "a sequence needs a user id and at least one item",
                    "",
                    pl.col("__tokens").list.len() < 2,
                    pl.col("text").str.slice(0, 80),
                ),
            ],
            path,
        )
        if rejects.height:
            source.rejects.append(rejects)
        exploded = (
            kept.select(
                FILE,
                LINE,
                pl.col("__tokens").list.first().alias(USER_ID),
                pl.col("__tokens").list.slice(1).alias(ITEM_ID),
            )
            .with_columns(
                pl.int_ranges(0, pl.col(ITEM_ID).list.len(), dtype=pl.Int64).alias("__position")
            )
            .explode(ITEM_ID, "__position")
        )
        start = int(SEQUENCE_EPOCH.timestamp() * 1_000_000)
        return exploded.with_columns(
            pl.lit("review").alias(EVENT_TYPE),
            (pl.lit(start) + pl.col("__position") * 1_000_000).cast(TS_DTYPE).alias(TS),
        ).drop("__position")

    @staticmethod
    def _attributes(source: SourceData, path: Path) -> pl.DataFrame:
        try:
            mapping = json.loads(read_bytes(path))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise SourceError(path, f"not valid JSON: {exc}") from None
        if not isinstance(mapping, dict):
            raise SourceError(path, 'expected a JSON object {"item": [attribute, ...]}')
        source.rows_read += len(mapping)
        ids, tags, positions = [], [], []
        bad = []
        for position, (item, attributes) in enumerate(mapping.items(), start=1):
            if not isinstance(attributes, list):
                bad.append((position, item, attributes))
                continue
            ids.append(str(item))
            tags.append(" ".join(f"attr_{a}" for a in attributes))
            positions.append(position)
        for position, item, value in bad:
            source.rejects.append(
                split_rejects(
                    pl.DataFrame({LINE: [position], "v": [json.dumps(value)[:80]]}),
                    [
                        Check(
                            f"attributes of item {item} are not a list",
                            item,
                            pl.lit(True),
                            pl.col("v"),
                        )
                    ],
                    path,
                )[1]
            )
        # The JSON is one line; the "line" of an item is its position in the object.
        return pl.DataFrame(
            {
                FILE: str(path),
                LINE: positions,
                ITEM_ID: ids,
                ATTRIBUTES: [json.dumps({"tags": t}) for t in tags],
                TEXT: tags,
            },
            schema={
                FILE: pl.String,
                LINE: pl.Int64,
                ITEM_ID: pl.String,
                ATTRIBUTES: pl.String,
                TEXT: pl.String,
            },
        )
