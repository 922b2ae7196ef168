"""``csv``, ``parquet`` and ``jsonl``: canonical tables, or any columns with a mapping.

Which table a file holds (events, items or users) comes from ``ingest.table`` in the config, or
else from its name (``events.csv``, ``products.parquet``, ``users.jsonl``) or its columns. Source
columns are renamed to canonical ones by ``ingest.mapping``; columns that are not canonical go
into ``context`` (events) or ``attributes`` (items, users) as a flat JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, register
from shoprec.data.formats.reading import RawTable, iter_delimited, read_lines
from shoprec.data.report import FILE, LINE, Check, reject_frame, split_rejects
from shoprec.data.schema import (
    ATTRIBUTES,
    CONTEXT,
    EVENT_TYPE,
    EVENTS_SCHEMA,
    ITEM_ID,
    ITEMS_SCHEMA,
    SOURCE,
    TS,
    TS_DTYPE,
    USER_ID,
    USERS_SCHEMA,
    json_attributes,
    parse_float,
    parse_float_failed,
    parse_timestamps,
)
from shoprec.exceptions import SourceError

__all__ = ["CsvAdapter", "JsonlAdapter", "ParquetAdapter", "coerce_canonical"]

_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "events": EVENTS_SCHEMA,
    "items": ITEMS_SCHEMA,
    "users": USERS_SCHEMA,
}
_REQUIRED = {"events": (USER_ID, ITEM_ID, TS), "items": (ITEM_ID,), "users": (USER_ID,)}
_EXTRA_COLUMN = {"events": CONTEXT, "items": ATTRIBUTES, "users": ATTRIBUTES}
_NAME_HINTS = (
    ("events", ("event", "interaction", "click", "order", "transaction", "rating")),
    ("items", ("item", "product", "catalog", "listing")),
    ("users", ("user", "customer")),
)
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")


def _table_of(path: Path, columns: Sequence[str], config: IngestConfig) -> str:
    if config.table != "auto":
        return config.table
    stem = path.name.lower()
    for table, hints in _NAME_HINTS:
        if any(hint in stem for hint in hints):
            return table
    names = set(columns)
    if {EVENT_TYPE, TS} & names or set(config.mapping.events) & {EVENT_TYPE, TS}:
        return "events"
    if ITEM_ID in names and USER_ID not in names:
        return "items"
    if USER_ID in names and ITEM_ID not in names:
        return "users"
    raise SourceError(
        path,
        "cannot tell whether this file holds events, items or users; "
        "name it events.*/items.*/users.* or set ingest.table in the config",
    )


def _rename(frame: pl.DataFrame, path: Path, table: str, config: IngestConfig) -> pl.DataFrame:
    mapping: dict[str, str] = getattr(config.mapping, table)
    absent = [source for source in mapping.values() if source not in frame.columns]
    if absent:
        raise SourceError(
            path, f"mapped column(s) {', '.join(absent)} not in the file ({table} mapping)"
        )
    renamed = frame.rename({source: canonical for canonical, source in mapping.items()})
    required = list(_REQUIRED[table])
    if table == "events" and config.default_event_type is None:
        required.append(EVENT_TYPE)
    missing = [c for c in required if c not in renamed.columns]
    if missing:
        raise SourceError(
            path,
            f"missing required column(s) {', '.join(missing)} for {table}; "
            f"found {', '.join(c for c in frame.columns if not c.startswith('_'))}",
        )
    return renamed


def _casts(current: pl.DataType, target: pl.DataType) -> bool:
    """Whether a typed column (Parquet) casts to a canonical one value by value."""
    if current == pl.Null() or current.is_numeric() or current == pl.Boolean():
        return True
    return target == pl.String() and (
        current.is_temporal() or isinstance(current, pl.Categorical | pl.Enum)
    )


def coerce_canonical(
    frame: pl.DataFrame, table: str, config: IngestConfig, path: Path
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast a renamed frame to a canonical table, rejecting rows whose values do not parse.

    String columns are parsed (numbers, booleans, timestamps); typed columns (from Parquet) are
    cast. Non-canonical columns are folded into the table's JSON column.
    """
    schema = _SCHEMAS[table]
    frame = _fold_extras(frame, table)
    if table == "events":
        frame = _event_types(frame, config)
    checks: list[Check] = []
    casts: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name not in frame.columns or name == SOURCE:
            continue
        frame, check, cast = _column_cast(frame, name, dtype, config, path)
        if check is not None:
            checks.append(check)
        casts.append(cast.alias(name))
    kept, rejects = split_rejects(frame, checks, path)
    kept = kept.with_columns(casts)
    return kept.drop([c for c in kept.columns if c.startswith("__")]), rejects


def _fold_extras(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The frame with its non-canonical columns folded into the table's JSON column (unless
    the file has that column itself: then they are dropped)."""
    extra_target = _EXTRA_COLUMN[table]
    extras = [c for c in frame.columns if c not in _SCHEMAS[table] and not c.startswith("_")]
    if extras and extra_target not in frame.columns:
        frame = frame.with_columns(json_attributes(extras).alias(extra_target))
    return frame.drop(extras)


def _event_types(frame: pl.DataFrame, config: IngestConfig) -> pl.DataFrame:
    """Events with the configured default type where they have none, and types renamed by
    ``ingest.event_type_map``."""
    if config.default_event_type is not None:
        default = pl.lit(config.default_event_type)
        frame = frame.with_columns(
            (
                pl.col(EVENT_TYPE).fill_null(default) if EVENT_TYPE in frame.columns else default
            ).alias(EVENT_TYPE)
        )
    if config.event_type_map:
        frame = frame.with_columns(
            pl.col(EVENT_TYPE).cast(pl.String).replace(config.event_type_map)
        )
    return frame


def _column_cast(
    frame: pl.DataFrame, name: str, dtype: pl.DataType, config: IngestConfig, path: Path
) -> tuple[pl.DataFrame, Check | None, pl.Expr]:
    """How column ``name`` becomes ``dtype``: the frame (with the raw text kept beside it where
    it is parsed), the check that rejects a row whose value does not parse (None for a cast
    that cannot fail) and the expression that computes the canonical column."""
    current = frame.schema[name]
    raw = f"__raw_{name}"
    if dtype == pl.Float64() and current == pl.String():
        frame = frame.with_columns(pl.col(name).alias(raw))
        check = Check(f"{name} is not a number", name, parse_float_failed(raw), pl.col(raw))
        return frame, check, parse_float(raw)
    if dtype == pl.Boolean() and current == pl.String():
        text = pl.col(name).str.strip_chars().str.to_lowercase()
        frame = frame.with_columns(pl.col(name).alias(raw))
        check = Check(
            f"{name} is not true/false",
            name,
            text.is_not_null() & ~text.is_in(_TRUE + _FALSE),
            pl.col(raw),
        )
        truth = (
            pl.when(text.is_in(_TRUE))
            .then(True)
            .when(text.is_in(_FALSE))
            .then(False)
            .otherwise(None)
        )
        return frame, check, truth
    if dtype == TS_DTYPE:
        return _timestamp_cast(frame, name, current, config, path)
    if isinstance(current, pl.Struct) and dtype == pl.String():
        return frame, None, pl.col(name).struct.json_encode()
    if current == dtype or _casts(current, dtype):
        return frame, None, pl.col(name).cast(dtype, strict=False)
    raise SourceError(path, f"column {name} has type {current}, expected {dtype}")


def _timestamp_cast(
    frame: pl.DataFrame, name: str, current: pl.DataType, config: IngestConfig, path: Path
) -> tuple[pl.DataFrame, Check | None, pl.Expr]:
    """:func:`_column_cast` for a timestamp column: text is parsed (rows that do not parse are
    rejected), datetimes and dates move to UTC microseconds, numbers are Unix seconds."""
    if current == pl.String():
        raw, parsed_name = f"__raw_{name}", f"__ts_{name}"
        parsed = parse_timestamps(frame.get_column(name), config.timestamp_formats or None)
        frame = frame.with_columns(pl.col(name).alias(raw), parsed.alias(parsed_name))
        check = Check(
            f"{name} is not a timestamp",
            name,
            pl.col(raw).is_not_null() & pl.col(parsed_name).is_null(),
            pl.col(raw),
        )
        return frame, check, pl.col(parsed_name)
    if isinstance(current, pl.Datetime):
        expr = pl.col(name).dt.cast_time_unit("us")
        utc = (
            expr.dt.convert_time_zone("UTC")
            if current.time_zone
            else expr.dt.replace_time_zone("UTC")
        )
        return frame, None, utc
    if current == pl.Date():
        return frame, None, pl.col(name).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if current.is_numeric():
        seconds = (
            (pl.col(name).cast(pl.Float64) * 1e6)
            .cast(pl.Int64, strict=False)  # beyond the Int64 range: no time
            .cast(TS_DTYPE)
        )
        return frame, None, seconds
    raise SourceError(path, f"column {name} has type {current}, expected a timestamp")


class _TabularAdapter:
    """Shared flow of the three generic formats; subclasses only read a file into strings.

    Event files are read lazily, piece by piece, so a file of any size loads in bounded memory;
    the first piece is read at once so that a missing column stops the load before any write.
    """

    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def _pieces(self, path: Path) -> Iterator[RawTable]:
        raise NotImplementedError

    def read(self, paths: Sequence[Path]) -> SourceData:
        source = SourceData()
        tables: dict[str, list[pl.DataFrame]] = {"items": [], "users": []}
        for path in paths:
            pieces = self._pieces(path)
            frame = source.take(next(pieces))
            if frame.height == 0 and len(frame.columns) <= 2:
                continue
            table = _table_of(path, frame.columns, self.config)
            first = self._coerce(source, path, table, frame)
            if table == "events":
                source.event_chunks.append(self._event_pieces(source, path, first, pieces))
            else:
                rest = [self._coerce(source, path, table, source.take(p)) for p in pieces]
                tables[table].extend([first, *rest])
        for table, frames in tables.items():
            if frames:
                setattr(source, table, pl.concat(frames, how="diagonal_relaxed"))
        return source

    def _coerce(
        self, source: SourceData, path: Path, table: str, frame: pl.DataFrame
    ) -> pl.DataFrame:
        renamed = _rename(frame, path, table, self.config)
        kept, rejects = coerce_canonical(renamed, table, self.config, path)
        if rejects.height:
            source.rejects.append(rejects)
        return kept

    def _event_pieces(
        self, source: SourceData, path: Path, first: pl.DataFrame, rest: Iterator[RawTable]
    ) -> Iterator[pl.DataFrame]:
        yield first
        for piece in rest:
            yield self._coerce(source, path, "events", source.take(piece))


@register("csv", "canonical (or mapped) events, items or users as CSV/TSV with a header")
class CsvAdapter(_TabularAdapter):
    name = "csv"
    summary = "CSV with a header row"

    def _pieces(self, path: Path) -> Iterator[RawTable]:
        separator = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
        return iter_delimited(path, separator=separator)


@register("parquet", "canonical (or mapped) events, items or users as Parquet")
class ParquetAdapter(_TabularAdapter):
    name = "parquet"
    summary = "Parquet"

    batch_rows: ClassVar[int] = 1_000_000

    def _pieces(self, path: Path) -> Iterator[RawTable]:
        """Row groups in batches; the "line" of a row is its 1-based position in the file."""
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise SourceError(path, f"not a readable Parquet file: {exc}") from None
        empty = reject_frame(path, [], "", field="", values=[])
        offset = 0
        try:
            for batch in parquet.iter_batches(batch_size=self.batch_rows):
                frame = pl.DataFrame(pl.from_arrow(batch))
                lines = pl.int_range(offset + 1, offset + frame.height + 1, dtype=pl.Int64)
                yield RawTable(frame.select(lines.alias(LINE), pl.all()), empty, path)
                offset += frame.height
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(path, f"damaged Parquet data: {exc}") from None
        if offset == 0:
            frame = pl.DataFrame(pl.from_arrow(parquet.schema_arrow.empty_table()))
            yield RawTable(frame.select(pl.lit(1, pl.Int64).alias(LINE), pl.all()), empty, path)


@register("jsonl", "canonical (or mapped) events, items or users as JSON Lines")
class JsonlAdapter(_TabularAdapter):
    name = "jsonl"
    summary = "JSON Lines, one object per line"

    def _pieces(self, path: Path) -> Iterator[RawTable]:
        yield self._read(path)

    def _read(self, path: Path) -> RawTable:
        lines = read_lines(path)
        records: list[dict[str, object]] = []
        numbers: list[int] = []
        bad_lines: list[int] = []
        bad_values: list[str] = []
        for number, text in lines.frame.iter_rows():
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                bad_lines.append(number)
                bad_values.append(f"{exc.msg} at column {exc.colno}")
                continue
            except (ValueError, RecursionError) as exc:  # over 4,300 digits; deep nesting
                bad_lines.append(number)
                bad_values.append(str(exc)[:80])
                continue
            if not isinstance(record, dict):
                bad_lines.append(number)
                bad_values.append(f"a JSON {type(record).__name__}, not an object")
                continue
            if LINE in record or FILE in record:
                bad_lines.append(number)
                bad_values.append(f"a key named {LINE} or {FILE}, names reserved for shoprec")
                continue
            records.append(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in record.items()}
            )
            numbers.append(number)
        columns = list(dict.fromkeys(k for r in records for k in r))
        frame = pl.DataFrame(
            {
                LINE: numbers,
                **{c: [None if r.get(c) is None else str(r[c]) for r in records] for c in columns},
            },
            schema={LINE: pl.Int64, **dict.fromkeys(columns, pl.String)},
        )
        rejects = pl.concat(
            [
                lines.rejects,
                reject_frame(path, bad_lines, "not a JSON object", field="", values=bad_values),
            ]
        )
        return RawTable(frame=frame, rejects=rejects, path=path)
