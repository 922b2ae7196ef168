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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

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

__all__ = ["AppendResult", "EventIdCache", "Lake", "LakeWriter"]

_PARTITION = "date"
_NO_IDS = pl.Series(EVENT_ID, [], dtype=pl.String)


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
    def writer(self, known: EventIdCache | None = None) -> Iterator[LakeWriter]:
        """A staged, all-or-nothing write: committed when the block ends without an error."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            writer = LakeWriter(self, known)
            try:
                yield writer
                writer.commit()
            finally:
                writer.discard()
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(
        self,
        events: pl.DataFrame | None = None,
        items: pl.DataFrame | None = None,
        users: pl.DataFrame | None = None,
        *,
        known: EventIdCache | None = None,
    ) -> AppendResult:
        """Add canonical tables to the lake in one all-or-nothing write.

        ``known`` remembers stored event ids between the writes of a long-lived writer (the
        stream worker), which then reads only the files that are new since its last write.
        """
        with self.writer(known) as writer:
            if events is not None:
                writer.add_events(events)
            if items is not None:
                writer.upsert_items(items)
            if users is not None:
                writer.upsert_users(users)
        assert writer.result is not None
        return writer.result


class EventIdCache:
    """The event ids stored in the lake, by day, remembered across writes.

    A stream worker appends a small file every few seconds; reading every file of the day again
    for each append would cost more with every append. With this cache a write reads only the
    day's files it has not seen (written by someone else, or before it started), so events
    another writer stored are still recognised. Only the ``days`` most recently used days are
    kept in memory.
    """

    def __init__(self, days: int = 3) -> None:
        self.days = days
        self._ids: dict[str, pl.Series] = {}
        self._files: dict[str, set[str]] = {}

    def ids(self, lake: Lake, day: str) -> pl.Series:
        """Every id stored under ``day`` (reading only the files not seen before)."""
        seen = self._files.setdefault(day, set())
        new = [path for path in lake.event_files([day]) if path.name not in seen]
        if new:
            read = pl.scan_parquet(new).select(EVENT_ID).collect().to_series()
            self._ids[day] = pl.concat([self._ids.get(day, _NO_IDS), read])
            seen.update(path.name for path in new)
        self._touch(day)
        return self._ids.get(day, _NO_IDS)

    def stored(self, day: str, name: str, ids: pl.Series) -> None:
        """Record a file this process has just written."""
        if day in self._files:
            self._files[day].add(name)
            self._ids[day] = pl.concat([self._ids.get(day, _NO_IDS), ids])

    def _touch(self, day: str) -> None:
        self._files[day] = self._files.pop(day)
        if day in self._ids:
            self._ids[day] = self._ids.pop(day)
        while len(self._files) > self.days:
            oldest = next(iter(self._files))
            del self._files[oldest]
            self._ids.pop(oldest, None)


class LakeWriter:
    """Stages events (chunk by chunk) and item/user upserts, then moves them into the lake.

    Events whose id the lake already holds, or that an earlier chunk of the same write staged,
    are skipped and counted as duplicates.
    """

    def __init__(self, lake: Lake, known: EventIdCache | None = None) -> None:
        self.lake = lake
        self.cache = known
        self._written: list[tuple[str, str, pl.Series]] = []  # day, file name, ids
        self.batch = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.staging = lake.root / f".staging-{self.batch}"
        self.staging.mkdir(parents=True)
        self._moves: list[tuple[Path, Path]] = []
        self._known: dict[str, pl.Series] = {}  # ids stored or staged, by day
        self._chunks = 0
        self._items: list[pl.DataFrame] = []
        self._users: list[pl.DataFrame] = []
        self.events_added = 0
        self.events_duplicate = 0
        self.result: AppendResult | None = None

    def add_events(self, events: pl.DataFrame, *, ids_unique: bool = False) -> None:
        """Stage canonical events (with ids), one Parquet file per date of the chunk.

        ``ids_unique`` promises that no id repeats within this write (ids generated by
        :class:`~shoprec.data.schema.EventIdAssigner`), which spares remembering them.
        """
        if events.height == 0:
            return
        before = events.height
        events = events.select(list(EVENTS_SCHEMA))
        if not ids_unique:
            events = events.unique(EVENT_ID, keep="first", maintain_order=True)
        dated = events.with_columns(pl.col(TS).dt.date().alias(_PARTITION))
        days = [d.isoformat() for d in dated.get_column(_PARTITION).unique().to_list()]
        for day in days:
            if day not in self._known and self.cache is not None:
                self._known[day] = self.cache.ids(self.lake, day)
            elif day not in self._known:
                stored = self.lake.event_files([day])
                self._known[day] = (
                    pl.scan_parquet(stored).select(EVENT_ID).collect().to_series()
                    if stored
                    else pl.Series(EVENT_ID, [], dtype=pl.String)
                )
        known = [self._known[d] for d in days if len(self._known[d])]
        if known:
            dated = dated.join(pl.concat(known).to_frame(), on=EVENT_ID, how="anti")
        self._chunks += 1
        for (day,), part in dated.partition_by(_PARTITION, as_dict=True).items():
            folder = f"{_PARTITION}={day.isoformat()}"
            name = f"part-{self.batch}-{self._chunks:05d}.parquet"
            staged = self.staging / folder / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            part = part.drop(_PARTITION).sort(TS)
            part.write_parquet(staged, compression="zstd")
            self._moves.append((staged, self.lake.events_dir / folder / name))
            if self.cache is not None:
                self._written.append((day.isoformat(), name, part.get_column(EVENT_ID)))
            if not ids_unique:
                self._known[day.isoformat()] = pl.concat(
                    [self._known[day.isoformat()], part.get_column(EVENT_ID)]
                )
        self.events_added += dated.height
        self.events_duplicate += before - dated.height

    def upsert_items(self, items: pl.DataFrame) -> None:
        self._items.append(items.select(list(ITEMS_SCHEMA)))

    def upsert_users(self, users: pl.DataFrame) -> None:
        self._users.append(users.select(list(USERS_SCHEMA)))

    def commit(self) -> AppendResult:
        items_total = self._stage_upsert(
            self._items,
            self.lake.items,
            ITEMS_SCHEMA,
            [ENTITY_TYPE, ITEM_ID],
            self.lake.items_path,
        )
        users_total = self._stage_upsert(
            self._users, self.lake.users, USERS_SCHEMA, [USER_ID], self.lake.users_path
        )
        _commit(self._moves)
        if self.cache is not None:
            for day, name, ids in self._written:
                self.cache.stored(day, name, ids)
        partitions = len(
            {t.parent for _, t in self._moves if t.parent.parent == self.lake.events_dir}
        )
        self.result = AppendResult(
            self.events_added, self.events_duplicate, items_total, users_total, partitions
        )
        return self.result

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def _stage_upsert(
        self,
        frames: list[pl.DataFrame],
        read_existing: Callable[[], pl.DataFrame],
        schema: dict[str, pl.DataType],
        keys: list[str],
        target: Path,
    ) -> int:
        if not frames:  # nothing to upsert: only the size is needed, not the table
            return _rows_in(target)
        existing = read_existing()
        # Within one write too, the latest non-null value of each column wins.
        new = (
            pl.concat(frames, how="vertical")
            .group_by(keys, maintain_order=True)
            .agg([pl.col(c).drop_nulls().last() for c in schema if c not in keys])
            .select(list(schema))
        )
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
        staged = self.staging / target.name
        merged.sort(keys).write_parquet(staged, compression="zstd")
        self._moves.append((staged, target))
        return merged.height


def _rows_in(path: Path) -> int:
    """Rows of a lake table from its Parquet footer (0 if there is none)."""
    if not path.exists():
        return 0
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as exc:  # pragma: no cover - a damaged file is an operator problem
        raise LakeError(f"{path}: cannot read lake table: {exc}") from exc


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
