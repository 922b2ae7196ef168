"""What every source adapter returns, and the registry of adapters by format name."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.reading import RawTable
from shoprec.data.report import FILE, REJECT_SCHEMA
from shoprec.exceptions import SourceError, UnknownFormatError

__all__ = ["Adapter", "SourceData", "adapter_names", "get_adapter", "register"]


@dataclass
class SourceData:
    """Canonical tables read from a source, before the shared validation.

    ``events`` carries the private columns ``_file`` and ``_line`` so that the shared checks can
    name the line of a rejected event. ``rows_read`` counts source records (lines, rows,
    transactions), whatever number of events they expand into.
    """

    events: pl.DataFrame | None = None
    event_chunks: list[Iterator[pl.DataFrame]] = field(default_factory=list)
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    rejects: list[pl.DataFrame] = field(default_factory=list)
    rows_read: int = 0
    rows_by_file: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def take(self, table: RawTable) -> pl.DataFrame:
        """Count a raw table's rows, keep its rejects, and return its rows tagged with the file.

        A file read in pieces is taken piece by piece; it is empty only if all its pieces are.
        """
        self.rows_read += table.rows_read
        path = str(table.path)
        self.rows_by_file[path] = self.rows_by_file.get(path, 0) + table.rows_read
        if table.rejects.height:
            self.rejects.append(table.rejects)
        return table.frame.with_columns(pl.lit(str(table.path)).alias(FILE))

    def iter_events(self) -> Iterator[pl.DataFrame]:
        """The events, whole or piece by piece; counts and rejects grow as pieces are read."""
        if self.events is not None:
            yield self.events
        for chunks in self.event_chunks:
            yield from chunks

    def all_warnings(self) -> list[str]:
        """The adapter's warnings after a warning for each file that held no rows; complete
        once the events are read."""
        empty = [path for path, rows in self.rows_by_file.items() if rows == 0]
        return [f"{path}: file is empty, nothing read" for path in empty] + self.warnings

    def all_rejects(self) -> pl.DataFrame:
        return pl.concat([pl.DataFrame(schema=REJECT_SCHEMA), *self.rejects], how="vertical")


class Adapter(Protocol):
    """Reads one source format into canonical tables.

    An adapter rejects malformed rows into :attr:`SourceData.rejects` and raises
    :class:`~shoprec.exceptions.SourceError` only when a file as a whole cannot be used.
    """

    name: ClassVar[str]
    summary: ClassVar[str]

    def read(self, paths: Sequence[Path]) -> SourceData: ...


AdapterFactory = Callable[[IngestConfig], Adapter]
_REGISTRY: dict[str, tuple[str, AdapterFactory]] = {}


def register(name: str, summary: str) -> Callable[[AdapterFactory], AdapterFactory]:
    """Class decorator: make an adapter available to ``shoprec ingest --format NAME``."""

    def decorate(factory: AdapterFactory) -> AdapterFactory:
        _REGISTRY[name] = (summary, factory)
        return factory

    return decorate


def adapter_names() -> dict[str, str]:
    """Format name -> one-line summary, for ``--help`` and error messages."""
    return {name: summary for name, (summary, _) in sorted(_REGISTRY.items())}


def get_adapter(name: str, config: IngestConfig | None = None) -> Adapter:
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownFormatError(f"unknown format {name!r}; known formats: {known}")
    return _REGISTRY[name][1](config or IngestConfig())


def pick_file(paths: Sequence[Path], *names: str) -> Path | None:
    """The first path whose file name is one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    return next((p for p in paths if p.name.lower() in wanted), None)


def unexpected_files(paths: Sequence[Path], used: Sequence[Path | None], expected: str) -> None:
    """Raise for a path the adapter does not know what to do with."""
    known = {p for p in used if p is not None}
    for path in paths:
        if path not in known:
            raise SourceError(path, f"not a file this format reads (expected {expected})")
