"""The workspace lake: Parquet files for items, users and date-partitioned events (DESIGN §3).

Events are append-only and idempotent by ``event_id``: appending a batch skips every event whose
id is already stored. Items and users are upserted by key, a later non-null value replacing an
earlier one. A write is staged in a private folder and moved into place only when every file is
written, so a failed write leaves the lake as it was.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from shoprec.data.schema import (
    ENTITY_TYPE,
    EVENT_ID,
    EVENTS_SCHEMA,
    ITEM_ID,
    ITEMS_SCHEMA,
    TS,
    USER_ID,
    USERS_SCHEMA,
)
from shoprec.exceptions import LakeError

__all__ = ["AppendResult", "Lake"]

_PARTITION = "date"


@dataclass(frozen=True)
class AppendResult:
    events_added: int
    events_duplicate: int
    items_total: int
    users_total: int
    partitions_written: int


class Lake:
    """The offline store of one workspace, rooted at ``<workspace>/lake``."""

    def __init__(self, workspace: Path | str) -> None:
        self.workspace = Path(workspace)
        self.root = self.workspace / "lake"

    @property
    def items_path(self) -> Path:
        return self.root / "items.parquet"

    @property
    def users_path(self) -> Path:
        return self.root / "users.parquet"

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    # -- reading ---------------------------------------------------------------------------------
    def event_files(self, dates: list[str] | None = None) -> list[Path]:
        """Parquet files of the event partitions, optionally only those of some dates."""
        if not self.events_dir.is_dir():
            return []
        if dates is None:
            return sorted(self.events_dir.glob(f"{_PARTITION}=*/*.parquet"))
        files: list[Path] = []
        for day in dates:
            files.extend(sorted((self.events_dir / f"{_PARTITION}={day}").glob("*.parquet")))
        return files

    def scan_events(self) -> pl.LazyFrame:
        """All events as a lazy frame in the canonical schema (empty when none are stored)."""
        files = self.event_files()
        if not files:
            return pl.LazyFrame(schema=EVENTS_SCHEMA)
        return pl.scan_parquet(files, hive_partitioning=False).select(list(EVENTS_SCHEMA))

    def events(self) -> pl.DataFrame:
        return self.scan_events().collect()

    def items(self) -> pl.DataFrame:
        return self._read_table(self.items_path, ITEMS_SCHEMA)

    def users(self) -> pl.DataFrame:
        return self._read_table(self.users_path, USERS_SCHEMA)

    @staticmethod
    def _read_table(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        if not path.exists():
            return pl.DataFrame(schema=schema)
        try:
            return pl.read_parquet(path)
        except Exception as exc:  # pragma: no cover - a damaged file is an operator problem
            raise LakeError(f"{path}: cannot read lake table: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(
        self,
        events: pl.DataFrame | None = None,
        items: pl.DataFrame | None = None,
        users: pl.DataFrame | None = None,
    ) -> AppendResult:
        """Add canonical tables to the lake in one all-or-nothing write."""
        with self._locked():
            batch = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
            staging = self.root / f".staging-{batch}"
            staging.mkdir(parents=True)
            moves: list[tuple[Path, Path]] = []
            try:
                added, duplicate = 0, 0
                if events is not None and events.height:
                    added, duplicate = self._stage_events(events, staging, batch, moves)
                items_total = self._stage_upsert(
                    items, self.items(), ITEMS_SCHEMA, [ENTITY_TYPE, ITEM_ID], staging, moves
                )
                users_total = self._stage_upsert(
                    users, self.users(), USERS_SCHEMA, [USER_ID], staging, moves
                )
                self._commit(moves)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        partitions = sum(1 for _, target in moves if target.parent.parent == self.events_dir)
        return AppendResult(added, duplicate, items_total, users_total, partitions)

    def _stage_events(
        self,
        events: pl.DataFrame,
        staging: Path,
        batch: str,
        moves: list[tuple[Path, Path]],
    ) -> tuple[int, int]:
        events = events.select(list(EVENTS_SCHEMA))
        before = events.height
        events = events.unique(EVENT_ID, keep="first", maintain_order=True)
        dated = events.with_columns(pl.col(TS).dt.strftime("%Y-%m-%d").alias(_PARTITION))
        dates = dated.get_column(_PARTITION).unique().sort().to_list()
        existing_files = self.event_files(dates)
        if existing_files:
            known = pl.scan_parquet(existing_files).select(EVENT_ID).collect()
            dated = dated.join(known, on=EVENT_ID, how="anti")
        for (day,), part in dated.partition_by(_PARTITION, as_dict=True).items():
            staged = staging / f"{_PARTITION}={day}" / f"part-{batch}.parquet"
            staged.parent.mkdir(parents=True, exist_ok=True)
            part.drop(_PARTITION).sort(TS).write_parquet(staged, compression="zstd")
            moves.append((staged, self.events_dir / f"{_PARTITION}={day}" / staged.name))
        return dated.height, before - dated.height

    def _stage_upsert(
        self,
        new: pl.DataFrame | None,
        existing: pl.DataFrame,
        schema: dict[str, pl.DataType],
        keys: list[str],
        staging: Path,
        moves: list[tuple[Path, Path]],
    ) -> int:
        if new is None or new.height == 0:
            return existing.height
        target = self.items_path if schema is ITEMS_SCHEMA else self.users_path
        new = new.select(list(schema)).unique(keys, keep="last", maintain_order=True)
        if existing.height:
            merged = existing.join(new, on=keys, how="full", coalesce=True, suffix="__new")
            merged = merged.select(
                *[pl.col(k) for k in keys],
                *[
                    pl.coalesce(pl.col(f"{c}__new"), pl.col(c)).alias(c)
                    for c in schema
                    if c not in keys
                ],
            ).select(list(schema))
        else:
            merged = new
        staged = staging / target.name
        merged.sort(keys).write_parquet(staged, compression="zstd")
        moves.append((staged, target))
        return merged.height

    @staticmethod
    def _commit(moves: list[tuple[Path, Path]]) -> None:
        """Move staged files into place; on any failure put back what was there before."""
        committed: list[tuple[Path, Path | None]] = []
        try:
            for staged, target in moves:
                target.parent.mkdir(parents=True, exist_ok=True)
                backup = None
                if target.exists():
                    backup = target.with_name(target.name + ".bak")
                    os.replace(target, backup)
                committed.append((target, backup))
                os.replace(staged, target)
        except BaseException:
            for target, backup in reversed(committed):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
            raise
        for _, backup in committed:
            if backup is not None:
                backup.unlink(missing_ok=True)
