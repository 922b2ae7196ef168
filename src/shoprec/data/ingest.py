"""``shoprec ingest``: read a source with its adapter, validate, and append to the lake."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats import SourceData, get_adapter
from shoprec.data.lake import Lake
from shoprec.data.report import FILE, LINE, Check, LoadReport, split_rejects
from shoprec.data.schema import (
    AVAILABLE,
    DEFAULT_ENTITY_TYPE,
    ENTITY_TYPE,
    EVENT_ID,
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    SOURCE,
    USERS_SCHEMA,
    EventIdAssigner,
    conform,
    event_checks,
    item_checks,
    user_checks,
)
from shoprec.exceptions import SourceError

__all__ = ["ingest", "read_events"]

_PRIVATE = (FILE, LINE)


def _with_location(frame: pl.DataFrame) -> pl.DataFrame:
    missing = [
        pl.lit(None, dtype).alias(name)
        for name, dtype in ((FILE, pl.String), (LINE, pl.Int64))
        if name not in frame.columns
    ]
    return frame.with_columns(missing) if missing else frame


def _validate(
    frame: pl.DataFrame | None,
    schema: dict[str, pl.DataType],
    checks: list[Check],
) -> tuple[pl.DataFrame | None, list[pl.DataFrame]]:
    if frame is None:
        return None, []
    conformed = conform(_with_location(frame), schema, keep=_PRIVATE)
    kept, rejects = split_rejects(conformed, checks)
    return kept.drop(_PRIVATE), [rejects] if rejects.height else []


def _check_paths(paths: Sequence[Path]) -> None:
    if not paths:
        raise SourceError(".", "no input files given")
    for path in paths:
        if not path.exists():
            raise SourceError(path, "file not found")
        if path.is_dir():
            raise SourceError(path, "is a directory, expected a file")


def ingest(
    paths: Sequence[Path | str],
    format_name: str,
    *,
    workspace: Path | str,
    config: IngestConfig | None = None,
    on_step: Callable[[str], None] | None = None,
) -> LoadReport:
    """Load source files of one format into the workspace lake and report what happened.

    Malformed rows are rejected into ``<workspace>/rejects/…csv``; a file that cannot be used
    at all raises :class:`~shoprec.exceptions.SourceError` before anything is written.
    """
    config = config or IngestConfig()
    adapter = get_adapter(format_name, config)
    files = [Path(p) for p in paths]
    _check_paths(files)
    if on_step:
        on_step("reading")
    source = adapter.read(files)

    rejected: list[pl.DataFrame] = []
    events_read = 0
    with Lake(workspace).writer() as writer:
        for events, supplied in _validated_events(source, format_name, rejected):
            writer.add_events(events, ids_unique=not supplied)
            events_read += events.height
            if on_step:
                on_step(f"{source.rows_read:,} rows read")
        items, users = _validated_tables(source, config, rejected)
        if items is not None:
            writer.upsert_items(items)
        if users is not None:
            writer.upsert_users(users)
        if on_step:
            on_step("writing the lake")
    result = writer.result
    assert result is not None
    report = _report(format_name, files, source, rejected, events_read, items, users)
    report.events_added = result.events_added
    report.events_already_in_lake = result.events_duplicate
    _write_log(Path(workspace), report)
    return report


def read_events(
    paths: Sequence[Path | str],
    format_name: str,
    *,
    config: IngestConfig | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None, LoadReport]:
    """Read and validate a source without touching any lake: events, items and the report.

    Rejected rows are only reported (``report.rejects``); nothing is written.
    """
    config = config or IngestConfig()
    adapter = get_adapter(format_name, config)
    files = [Path(p) for p in paths]
    _check_paths(files)
    source = adapter.read(files)
    rejected: list[pl.DataFrame] = []
    chunks = [events for events, _ in _validated_events(source, format_name, rejected)]
    events = (
        pl.concat(chunks, how="vertical") if chunks else pl.DataFrame(schema=EVENTS_SCHEMA)
    ).unique(EVENT_ID, keep="first", maintain_order=True)
    items, users = _validated_tables(source, config, rejected)
    report = _report(format_name, files, source, rejected, events.height, items, users)
    return events, items, report


def _validated_events(
    source: SourceData, format_name: str, rejected: list[pl.DataFrame]
) -> Iterator[tuple[pl.DataFrame, bool]]:
    """Valid events chunk by chunk, with ids; whether the source supplied the ids."""
    assign_ids = EventIdAssigner()
    for chunk in source.iter_events():
        chunk = chunk.with_columns(pl.lit(format_name).alias(SOURCE))
        events, rejects = _validate(chunk, EVENTS_SCHEMA, event_checks())
        rejected.extend(rejects)
        if events is None or events.height == 0:
            continue
        supplied = events.get_column(EVENT_ID).null_count() < events.height
        yield assign_ids(events), supplied


def _validated_tables(
    source: SourceData, config: IngestConfig, rejected: list[pl.DataFrame]
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    items, item_rejects = _validate(
        _item_defaults(source.items, config), ITEMS_SCHEMA, item_checks()
    )
    users, user_rejects = _validate(source.users, USERS_SCHEMA, user_checks())
    rejected.extend([*item_rejects, *user_rejects])
    return items, users


def _report(
    format_name: str,
    files: Sequence[Path],
    source: SourceData,
    rejected: list[pl.DataFrame],
    events_read: int,
    items: pl.DataFrame | None,
    users: pl.DataFrame | None,
) -> LoadReport:
    return LoadReport(
        format=format_name,
        files=[str(p) for p in files],
        rows_read=source.rows_read,
        rejects=pl.concat([source.all_rejects(), *rejected], how="vertical").sort(
            "file", "line", nulls_last=True, maintain_order=True
        ),
        warnings=source.all_warnings(),
        events_read=events_read,
        items=0 if items is None else items.height,
        users=0 if users is None else users.height,
    )


def _item_defaults(items: pl.DataFrame | None, config: IngestConfig) -> pl.DataFrame | None:
    """Entity type (config, source, or ``item``) and availability (true unless said)."""
    if items is None:
        return None
    if config.entity_type:
        entity = pl.lit(config.entity_type)
    elif ENTITY_TYPE in items.columns:
        entity = pl.col(ENTITY_TYPE).fill_null(DEFAULT_ENTITY_TYPE)
    else:
        entity = pl.lit(DEFAULT_ENTITY_TYPE)
    available = pl.col(AVAILABLE).fill_null(True) if AVAILABLE in items.columns else pl.lit(True)
    return items.with_columns(entity.alias(ENTITY_TYPE), available.alias(AVAILABLE))


def _write_log(workspace: Path, report: LoadReport) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    if report.rejects.height:
        rejects_dir = workspace / "rejects"
        rejects_dir.mkdir(parents=True, exist_ok=True)
        path = rejects_dir / f"{stamp}-{report.format}.csv"
        report.rejects.write_csv(path)
        report.rejects_path = str(path)
    log = workspace / "lake" / "ingest-log.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"at": stamp, **report.to_dict()}) + "\n")
