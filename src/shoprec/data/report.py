"""Row-level validation and the load report.

A malformed row never stops a load and is never dropped silently: it becomes a *reject*
(file, line, reason, field, offending value), the load goes on, and the report at the end counts
rows read, kept and rejected, by reason, with the first place each reason occurred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

__all__ = [
    "FILE",
    "LINE",
    "REJECT_SCHEMA",
    "Check",
    "LoadReport",
    "ReasonCount",
    "reject_frame",
    "split_rejects",
]

LINE = "_line"
FILE = "_file"

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
    "field": pl.String(),
    "value": pl.String(),
}


def reject_frame(
    path: Path | str,
    lines: Sequence[int],
    reason: str,
    *,
    field: str,
    values: Sequence[str | None],
) -> pl.DataFrame:
    """Rejects of one reason, built from plain lists."""
    n = len(lines)
    return pl.DataFrame(
        {
            "file": [str(path)] * n,
            "line": list(lines),
            "reason": [reason] * n,
            "field": [field] * n,
            "value": list(values),
        },
        schema=REJECT_SCHEMA,
    )


@dataclass(frozen=True)
class Check:
    """One row-level rule: rows where ``failed`` is true are rejected for ``reason``.

    ``field`` names the source column at fault; ``value`` (default: that column) is what the
    rejects file shows as the offending value.
    """

    reason: str
    field: str
    failed: pl.Expr
    value: pl.Expr | None = None

    def value_expr(self) -> pl.Expr:
        if self.value is not None:
            return self.value.cast(pl.String)
        return pl.col(self.field).cast(pl.String) if self.field else pl.lit(None, pl.String)


def split_rejects(
    frame: pl.DataFrame, checks: Sequence[Check], path: Path | str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``frame`` into the rows passing every check and the rejects of the others.

    Each rejected row is reported once, for the first check it fails. The file comes from
    ``path`` or, when the frame mixes files, from its ``_file`` column.
    """
    if not checks or frame.height == 0:
        return frame, pl.DataFrame(schema=REJECT_SCHEMA)
    index = "__check"
    first_failure: pl.Expr = pl.lit(None, pl.Int32)
    for position in reversed(range(len(checks))):
        first_failure = (
            pl.when(checks[position].failed.fill_null(False))
            .then(pl.lit(position, pl.Int32))
            .otherwise(first_failure)
        )
    tagged = frame.with_columns(first_failure.alias(index))
    kept = tagged.filter(pl.col(index).is_null()).drop(index)
    failed = tagged.filter(pl.col(index).is_not_null())
    if failed.height == 0:
        return kept, pl.DataFrame(schema=REJECT_SCHEMA)
    parts = []
    file_expr = pl.lit(str(path)) if path is not None else pl.col(FILE)
    for position, check in enumerate(checks):
        rows = failed.filter(pl.col(index) == position)
        if rows.height:
            parts.append(
                rows.select(
                    file_expr.cast(pl.String).alias("file"),
                    pl.col(LINE).cast(pl.Int64).alias("line"),
                    pl.lit(check.reason).alias("reason"),
                    pl.lit(check.field).alias("field"),
                    check.value_expr().alias("value"),
                )
            )
    return kept, pl.concat(parts, how="vertical").sort("line", maintain_order=True)


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    count: int
    first_file: str
    first_line: int


@dataclass
class LoadReport:
    """What one ingest read, kept and rejected, and what it added to the lake."""

    format: str
    files: list[str]
    rows_read: int = 0
    rejects: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REJECT_SCHEMA))
    events_read: int = 0
    events_added: int = 0
    events_already_in_lake: int = 0
    items: int = 0
    users: int = 0
    warnings: list[str] = field(default_factory=list)
    rejects_path: str | None = None

    @property
    def rows_rejected(self) -> int:
        """Source rows rejected: one row failing several rules (or events) counts once.

        A rejected record that no row holds (an item the adapter derived from many invoice
        lines) names no line; it is in :attr:`rejects` but is not a row.
        """
        located = self.rejects.filter(pl.col("line").is_not_null())
        return located.select("file", "line").n_unique() if located.height else 0

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.rows_rejected

    def by_reason(self) -> list[ReasonCount]:
        """Reject counts per reason, most frequent first, each with its first file:line."""
        if self.rejects.height == 0:
            return []
        summary = (
            self.rejects.with_row_index("__order")
            .sort("file", "line", "__order")
            .group_by("reason", maintain_order=True)
            .agg(
                pl.len().alias("count"),
                pl.col("file").first().alias("first_file"),
                pl.col("line").first().alias("first_line"),
            )
            .sort(["count", "reason"], descending=[True, False])
        )
        return [ReasonCount(**row) for row in summary.iter_rows(named=True)]

    def to_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "files": self.files,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_rejected": self.rows_rejected,
            "rejected_by_reason": [r.__dict__ for r in self.by_reason()],
            "events_read": self.events_read,
            "events_added": self.events_added,
            "events_already_in_lake": self.events_already_in_lake,
            "items": self.items,
            "users": self.users,
            "warnings": self.warnings,
            "rejects_path": self.rejects_path,
        }
