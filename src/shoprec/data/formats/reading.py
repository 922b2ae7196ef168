"""Reading source files line by line, keeping every record's file and line number.

Two readers serve every adapter:

* :func:`read_lines` gives the non-blank lines of a text file (JSON Lines, free-form text);
* :func:`read_delimited` gives a delimited file as a table of strings.

Both strip a UTF-8 byte-order mark, accept LF and CRLF line ends, turn an unreadable file into a
:class:`~shoprec.exceptions.SourceError`, and never drop a malformed line silently: a line that is
not valid text, or has the wrong number of fields, goes to the returned rejects.

Delimited files take a vectorised fast path (Polars' CSV reader, with NumPy counting the fields of
every physical line); a file with quoted line breaks takes the exact but slower path through
Python's :mod:`csv` module.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shoprec.data.report import FILE, LINE, reject_frame
from shoprec.exceptions import SourceError

__all__ = ["RawTable", "iter_delimited", "read_bytes", "read_delimited", "read_lines"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RawTable:
    """Rows of one source file as strings, with their line numbers, and the lines rejected."""

    frame: pl.DataFrame
    rejects: pl.DataFrame
    path: Path

    @property
    def rows_read(self) -> int:
        return self.frame.height + self.rejects.height


def read_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into one clear :class:`SourceError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(path, "file not found") from None
    except IsADirectoryError:
        raise SourceError(path, "is a directory, expected a file") from None
    except PermissionError:
        raise SourceError(path, "permission denied") from None
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror or exc}") from None
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    return data


def _decode(path: Path, data: bytes, encoding: str) -> tuple[bytes, list[int]]:
    """Return UTF-8 bytes with undecodable lines blanked, and the 1-based numbers of those lines."""
    if encoding.lower().replace("_", "-") in {"utf-8", "utf8"}:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return data, []
        lines = data.split(b"\n")
        bad: list[int] = []
        for number, raw in enumerate(lines, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(number)
                lines[number - 1] = b""
        return b"\n".join(lines), bad
    try:
        return data.decode(encoding).encode("utf-8"), []
    except (LookupError, UnicodeDecodeError) as exc:
        raise SourceError(path, f"cannot decode as {encoding}: {exc}") from None


def _invalid_text_rejects(path: Path, lines: list[int]) -> pl.DataFrame:
    return reject_frame(path, lines, "invalid UTF-8 text", field="", values=[""] * len(lines))


def read_lines(path: Path, *, encoding: str = "utf-8") -> RawTable:
    """The non-blank lines of a text file as a frame with columns ``_line`` and ``text``."""
    data, bad = _decode(path, read_bytes(path), encoding)
    text = data.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    frame = pl.DataFrame(
        {LINE: pl.int_range(1, len(lines) + 1, eager=True).cast(pl.Int64), "text": lines},
        schema={LINE: pl.Int64, "text": pl.String},
    ).with_columns(pl.col("text").str.strip_suffix("\r"))
    blank = frame["text"].str.strip_chars().str.len_chars() == 0
    bad_set = set(bad)
    frame = frame.filter(~blank)
    if bad_set:
        frame = frame.filter(~pl.col(LINE).is_in(list(bad_set)))
    return RawTable(frame=frame, rejects=_invalid_text_rejects(path, bad), path=path)


_CHUNK_BYTES = 64 * 1024 * 1024


def _line_starts(buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets (end exclusive, without the newline) of every physical line."""
    newlines = np.flatnonzero(buffer == ord("\n"))
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [buffer.size]))
    if starts[-1] == buffer.size:  # a trailing newline ends the last line; no empty line after it
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


def _count_per_line(buffer: np.ndarray, byte: str, starts: np.ndarray) -> np.ndarray:
    return _per_line(buffer == ord(byte), starts)


def _per_line(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """How many bytes of each line ``mask`` marks."""
    owner = np.searchsorted(starts, np.flatnonzero(mask), side="right") - 1
    return np.bincount(owner, minlength=starts.size)


def _blank_characters(separator: str) -> str:
    """What a blank line may hold: white space, but not the separator (``\\t\\t`` in a
    tab-separated file is a row of empty fields)."""
    return "".join(c for c in " \t\r\n\x0b\x0c" if c != separator)


def _record_boundary(data: bytes, quote_char: str | None) -> int:
    """Offset just after the last newline that is not inside a quoted field; -1 if none."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == ord("\n"))
    if quote_char and newlines.size:
        quotes = np.flatnonzero(buffer == ord(quote_char))
        newlines = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    return int(newlines[-1]) + 1 if newlines.size else -1


def _pieces(path: Path, quote_char: str | None, chunk_bytes: int) -> Iterator[tuple[bytes, int]]:
    """The file in pieces of whole records, each with the number of its first line."""
    try:
        handle = path.open("rb")
    except OSError:
        read_bytes(path)  # raises the SourceError that names the problem
        raise
    with handle:
        carry = b""
        line = 1
        first = True
        while True:
            block = handle.read(chunk_bytes)
            data = carry + block
            if first and data.startswith(_BOM):
                data = data[len(_BOM) :]
            first = False
            if block:
                cut = _record_boundary(data, quote_char)
                if cut < 0:
                    carry = data
                    continue
                piece, carry = data[:cut], data[cut:]
            else:
                piece, carry = data, b""
            if piece:
                yield piece, line
                line += piece.count(b"\n")
            if not block:
                return


def iter_delimited(
    path: Path,
    *,
    separator: str = ",",
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    encoding: str = "utf-8",
    quote_char: str | None = '"',
    chunk_bytes: int = _CHUNK_BYTES,
) -> Iterator[RawTable]:
    """Read a delimited file as strings in pieces of about ``chunk_bytes``, in file order.

    Each piece holds whole records with their 1-based line numbers, so memory stays bounded
    whatever the file's size. See :func:`read_delimited` for the parameters.
    """
    columns: list[str] | None = list(names) if names is not None else None
    produced = False
    for piece, first_line in _pieces(path, quote_char, chunk_bytes):
        data, bad = _decode(path, piece, encoding)
        skip = 0
        if columns is None:
            # The header is the first non-blank line; blank lines before it are skipped.
            start, blanks = 0, 0
            end = data.find(b"\n")
            while not data[start : end if end >= 0 else len(data)].strip():
                if blanks + 1 in bad:  # undecodable, hence blanked
                    raise SourceError(
                        path, f"the header (line {first_line + blanks}) is not UTF-8 text"
                    )
                if end < 0:
                    break
                start, blanks = end + 1, blanks + 1
                end = data.find(b"\n", start)
            header = data[start : end if end >= 0 else len(data)].decode("utf-8").rstrip("\r")
            if not header.strip():
                continue
            columns = _header(path, header, separator)
            _check_required(path, columns, required)
            skip = blanks + 1
        produced = True
        yield _parse_piece(path, data, bad, columns, first_line, skip, separator, quote_char)
    if not produced:  # an empty file: no header, no rows; the required columns, all empty
        empty_columns = columns or list(required)
        yield RawTable(
            frame=pl.DataFrame(schema={LINE: pl.Int64, **dict.fromkeys(empty_columns, pl.String)}),
            rejects=_invalid_text_rejects(path, []),
            path=path,
        )


def _header(path: Path, line: str, separator: str) -> list[str]:
    """The column names of a header line; a name twice, or a private name, is refused."""
    try:
        columns = [c.strip() for c in next(csv.reader([line], delimiter=separator))]
    except csv.Error as exc:
        raise SourceError(path, f"the header is not valid CSV: {_csv_problem(exc)}") from None
    for position, name in enumerate(columns):
        if name in columns[:position]:
            raise SourceError(path, f"the header names column {name!r} twice")
        if name in (LINE, FILE):
            raise SourceError(path, f"the header has a column named {name!r}, a reserved name")
    return columns


def _csv_problem(error: csv.Error) -> str:
    """The csv module's complaint, in terms of the file rather than of how it was opened."""
    message = str(error)
    if "new-line character seen in unquoted field" in message:
        return "a carriage return (\\r) inside an unquoted field"
    return message


def _check_required(path: Path, columns: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(columns) or "none"
        raise SourceError(path, f"missing required column(s) {', '.join(missing)}; found {found}")


def read_delimited(
    path: Path,
    *,
    separator: str = ",",
    names: Sequence[str] | None = None,
    required: Sequence[str] = (),
    encoding: str = "utf-8",
    quote_char: str | None = '"',
) -> RawTable:
    """Read a delimited file as strings, one row per record, with its 1-based line number.

    Parameters
    ----------
    names
        Column names for a file without a header row; ``None`` reads them from the first line.
    required
        Columns that must be present in the header; a missing one raises :class:`SourceError`.
    quote_char
        ``None`` for formats that never quote (tab-separated dumps).
    """
    tables = list(
        iter_delimited(
            path,
            separator=separator,
            names=names,
            required=required,
            encoding=encoding,
            quote_char=quote_char,
        )
    )
    if len(tables) == 1:
        return tables[0]
    return RawTable(
        frame=pl.concat([t.frame for t in tables], how="vertical"),
        rejects=pl.concat([t.rejects for t in tables], how="vertical"),
        path=path,
    )


def _parse_piece(
    path: Path,
    data: bytes,
    bad: list[int],
    columns: list[str],
    first_line: int,
    skip: int,
    separator: str,
    quote_char: str | None,
) -> RawTable:
    """Parse whole records of one piece; ``bad`` and line numbers are relative to the piece."""
    offset = first_line - 1
    bad_lines = [offset + b for b in bad]
    buffer = np.frombuffer(data, dtype=np.uint8)
    starts, ends = _line_starts(buffer)
    if starts.size <= skip:
        return RawTable(
            frame=pl.DataFrame(schema={LINE: pl.Int64, **dict.fromkeys(columns, pl.String)}),
            rejects=_invalid_text_rejects(path, bad_lines),
            path=path,
        )
    filled = ~np.isin(buffer, np.frombuffer(_blank_characters(separator).encode(), np.uint8))
    blank = _per_line(filled, starts) == 0
    quotes = (
        _count_per_line(buffer, quote_char, starts)
        if quote_char
        else np.zeros(starts.size, np.int64)
    )
    if (quotes % 2).any():  # a quoted field spans lines: only the csv module can follow it
        return _read_delimited_exact(
            path, data, separator, columns, skip, offset, bad_lines, quote_char
        )

    fields = _count_per_line(buffer, separator, starts) + 1
    try:
        for index in np.flatnonzero(quotes > 0):  # separators inside quotes do not split fields
            text = data[starts[index] : ends[index]].decode("utf-8").rstrip("\r")
            fields[index] = len(next(csv.reader([text], delimiter=separator, quotechar=quote_char)))
    except csv.Error:  # a line csv cannot read: the exact path rejects it with the reason
        return _read_delimited_exact(
            path, data, separator, columns, skip, offset, bad_lines, quote_char
        )

    try:
        frame = pl.read_csv(
            data,
            has_header=False,
            new_columns=columns,
            skip_rows=skip,
            separator=separator,
            quote_char=quote_char,
            infer_schema=False,
            truncate_ragged_lines=True,
            schema=dict.fromkeys(columns, pl.String),
        )
    except pl.exceptions.PolarsError:  # e.g. a ragged first row: take the exact path
        return _read_delimited_exact(
            path, data, separator, columns, skip, offset, bad_lines, quote_char
        )
    line_numbers = np.arange(offset + skip + 1, offset + starts.size + 1, dtype=np.int64)
    if frame.height != line_numbers.size:
        return _read_delimited_exact(
            path, data, separator, columns, skip, offset, bad_lines, quote_char
        )
    frame = frame.with_columns(pl.Series(LINE, line_numbers)).select(LINE, *columns)

    data_fields = fields[skip:]
    data_blank = blank[skip:]
    bad_mask = np.isin(line_numbers, np.asarray(bad_lines, dtype=np.int64))
    wrong = (data_fields != len(columns)) & ~data_blank & ~bad_mask
    rejects = [_invalid_text_rejects(path, bad_lines)]
    if wrong.any():
        rejects.append(
            reject_frame(
                path,
                line_numbers[wrong].tolist(),
                f"wrong number of fields (expected {len(columns)})",
                field="",
                values=[f"{n} fields" for n in data_fields[wrong].tolist()],
            )
        )
    keep = ~(wrong | data_blank | bad_mask)
    return RawTable(
        frame=frame.filter(pl.Series(keep)), rejects=pl.concat(rejects, how="vertical"), path=path
    )


class _Lines:
    """The physical lines of a text (each with its ``\\n``), read by :mod:`csv` one at a time;
    ``position`` is the number of lines handed out, and may be set back to re-read from there."""

    def __init__(self, text: str) -> None:
        parts = text.split("\n")
        self.lines = [part + "\n" for part in parts[:-1]]
        if parts[-1]:
            self.lines.append(parts[-1])
        self.position = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.position >= len(self.lines):
            raise StopIteration
        self.position += 1
        return self.lines[self.position - 1]


def _read_delimited_exact(
    path: Path,
    data: bytes,
    separator: str,
    columns: list[str],
    skip: int,
    offset: int,
    bad_lines: list[int],
    quote_char: str | None = '"',
) -> RawTable:
    """Parse record by record with :mod:`csv`, following quoted line breaks.

    A quote that is never closed would swallow the records after it: a record that runs over
    several lines and then breaks (a quote closed in mid-field, the end of the file inside
    quotes, the wrong number of fields), or whose quotes do not pair up, is rejected as an
    unclosed quote on its first line alone, and reading resumes on the next line.
    """
    text = data.decode("utf-8")
    # the csv module refuses a field longer than its limit; no field can exceed the piece
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    quoting = {"quotechar": quote_char} if quote_char else {"quoting": csv.QUOTE_NONE}
    lines = _Lines(text)
    lines.position = skip

    def reader() -> Iterator[list[str]]:
        return csv.reader(lines, delimiter=separator, strict=True, **quoting)

    records = reader()
    skipped = set(bad_lines)
    values: list[list[str | None]] = [[] for _ in columns]
    numbers: list[int] = []
    rejected: dict[str, tuple[list[int], list[str]]] = {}

    def reject(reason: str, line: int, value: str) -> None:
        at, shown = rejected.setdefault(reason, ([], []))
        at.append(offset + line)
        shown.append(value)

    wrong = f"wrong number of fields (expected {len(columns)})"
    blank = _blank_characters(separator)
    while True:
        first = lines.position
        try:
            record = next(records)
        except StopIteration:
            break
        except csv.Error as exc:
            ran_on = lines.position - first > 1 or "unexpected end of data" in str(exc)
            if ran_on:  # a quoted field ran on, then broke or never closed
                reject("unclosed quote", first + 1, lines.lines[first].rstrip("\r\n")[:80])
            else:
                reject("not valid CSV", first + 1, _csv_problem(exc))
            lines.position, records = first + 1, reader()
            continue
        spanned = lines.lines[first : lines.position]
        if offset + first + 1 in skipped:
            continue
        if not "".join(spanned).strip(blank):
            continue
        quotes = sum(line.count(quote_char) for line in spanned) if quote_char else 0
        runs_on = len(spanned) > 1 and (
            len(record) != len(columns)
            or not skipped.isdisjoint(range(offset + first + 2, offset + lines.position + 1))
        )
        if quotes % 2 or runs_on:
            reject("unclosed quote", first + 1, spanned[0].rstrip("\r\n")[:80])
            lines.position, records = first + 1, reader()
            continue
        if len(record) != len(columns):
            reject(wrong, first + 1, f"{len(record)} fields")
            continue
        numbers.append(offset + first + 1)
        for column, value in zip(values, record, strict=True):
            column.append(value if value != "" else None)
    frame = pl.DataFrame(
        {LINE: numbers, **dict(zip(columns, values, strict=True))},
        schema={LINE: pl.Int64, **dict.fromkeys(columns, pl.String)},
    )
    rejects = pl.concat(
        [
            _invalid_text_rejects(path, bad_lines),
            *[
                reject_frame(path, at, reason, field="", values=shown)
                for reason, (at, shown) in rejected.items()
            ],
        ]
    ).sort("line", maintain_order=True)
    return RawTable(frame=frame, rejects=rejects, path=path)
