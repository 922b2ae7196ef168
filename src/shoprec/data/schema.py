"""The canonical data model: column names, table schemas, parsing and validation.

Every adapter produces these three tables and every other part of shoprec consumes only them
(DESIGN §2). Column names are constants here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import polars_hash as plh

from shoprec.data.report import Check

__all__ = [
    "CONTROL_CHARACTERS",
    "EARLIEST_TS",
    "ENTITY_TYPE_PATTERN",
    "EVENTS_SCHEMA",
    "EVENT_TYPE_PATTERN",
    "FUTURE_TOLERANCE",
    "ITEMS_SCHEMA",
    "NON_ITEM_EVENT_TYPES",
    "TS_DTYPE",
    "USERS_SCHEMA",
    "Bounds",
    "EventIdAssigner",
    "add_event_ids",
    "conform",
    "event_checks",
    "id_checks",
    "item_checks",
    "json_attributes",
    "json_object_problem",
    "parse_float",
    "parse_float_failed",
    "parse_timestamps",
    "ts_out_of_range",
    "user_checks",
]

# -- column names -------------------------------------------------------------------------------
ITEM_ID = "item_id"
ENTITY_TYPE = "entity_type"
TITLE = "title"
CATEGORY = "category"
PRICE = "price"
AVAILABLE = "available"
CREATED_AT = "created_at"
ATTRIBUTES = "attributes"
TEXT = "text"
LAT = "lat"
LON = "lon"
USER_ID = "user_id"
EMAIL = "email"
EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
TS = "ts"
VALUE = "value"
BASKET_ID = "basket_id"
SESSION_ID = "session_id"
CONTEXT = "context"
RECOMMENDATION_ID = "recommendation_id"
SOURCE = "source"
# Not canonical columns: the enrichment's text vector of an item (Array of float32) and the
# "<provider>/<version>" that made it, which the build adds to the catalogue it trains on (see
# shoprec.embeddings.cache.with_item_embeddings).
EMBEDDING = "embedding"
EMBEDDING_VERSION = "embedding_version"

TS_DTYPE = pl.Datetime("us", "UTC")

ITEMS_SCHEMA: dict[str, pl.DataType] = {
    ITEM_ID: pl.String(),
    ENTITY_TYPE: pl.String(),
    TITLE: pl.String(),
    CATEGORY: pl.String(),
    PRICE: pl.Float64(),
    AVAILABLE: pl.Boolean(),
    CREATED_AT: TS_DTYPE,
    ATTRIBUTES: pl.String(),  # a flat JSON object, str -> scalar
    TEXT: pl.String(),
    LAT: pl.Float64(),
    LON: pl.Float64(),
}

USERS_SCHEMA: dict[str, pl.DataType] = {
    USER_ID: pl.String(),
    EMAIL: pl.String(),
    ATTRIBUTES: pl.String(),
    LAT: pl.Float64(),
    LON: pl.Float64(),
}

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    EVENT_ID: pl.String(),
    USER_ID: pl.String(),
    ITEM_ID: pl.String(),
    EVENT_TYPE: pl.String(),
    TS: TS_DTYPE,
    VALUE: pl.Float64(),
    PRICE: pl.Float64(),
    BASKET_ID: pl.String(),
    SESSION_ID: pl.String(),
    CONTEXT: pl.String(),  # a flat JSON object: platform, device, country, ...
    RECOMMENDATION_ID: pl.String(),
    SOURCE: pl.String(),  # the adapter that produced the event
}

# Event types that describe a visit rather than an item; they carry no item_id.
NON_ITEM_EVENT_TYPES = frozenset({"pageview", "engagement", "search", "session_start"})
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# no id may hold one: a NUL or a line break in an id breaks the files and logs it ends up in
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
ENTITY_TYPE_PATTERN = r"^[A-Za-z0-9_]{1,40}$"

# An event's time must lie in [EARLIEST_TS, now + FUTURE_TOLERANCE]: one event from year 1 (a
# zeroed date) stretches the data's time span to two millennia and empties the ranker's windows.
EARLIEST_TS = datetime(1990, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)


class Bounds:
    """The largest values the API models accept (``shoprec.stream.events``); ingest rejects a
    row that exceeds one, so a file cannot put into the lake what the API would refuse."""

    ID_LENGTH = 200
    TITLE_LENGTH = 1000
    CATEGORY_LENGTH = 200
    TEXT_LENGTH = 10_000
    KEY_LENGTH = 64
    ATTRIBUTES = 64
    ATTRIBUTE_VALUE_LENGTH = 500
    CONTEXT_ENTRIES = 32
    CONTEXT_VALUE_LENGTH = 200


DEFAULT_ENTITY_TYPE = "item"


# -- parsing ------------------------------------------------------------------------------------
def parse_float(column: str | pl.Expr) -> pl.Expr:
    """Strings to floats; blanks and garbage become null (see :func:`parse_float_failed`)."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.str.strip_chars().cast(pl.Float64, strict=False)


def parse_float_failed(column: str) -> pl.Expr:
    """True where a non-blank string is not a finite number."""
    raw = pl.col(column).str.strip_chars()
    parsed = parse_float(column)
    return ((raw.str.len_chars() > 0) & (parsed.is_null() | ~parsed.is_finite())).fill_null(False)


_NAIVE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y.%m.%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
)
_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")


def parse_timestamps(values: pl.Series, formats: Sequence[str] | None = None) -> pl.Series:
    """Parse timestamp strings to UTC datetimes; what no format reads becomes null.

    Naive times are taken as UTC. Without ``formats``, ISO-8601 variants (with or without a
    ``T``, fractions and a zone offset or ``Z``), ``YYYY.MM.DD HH:MM:SS``, ``YYYY/MM/DD`` and
    Unix epoch seconds (or milliseconds, for numbers of 1e11 and more) are accepted. Each
    format is tried only on the values the previous ones could not read.
    """
    text = values.cast(pl.String).str.strip_chars()
    result = pl.select(pl.repeat(None, len(text), dtype=TS_DTYPE)).to_series().alias(values.name)
    todo = text.is_not_null() & (text.str.len_chars() > 0)
    candidates: list[tuple[str, bool]]
    if formats:
        candidates = [(f, "%z" in f or "%#z" in f) for f in formats]  # "epoch" is a format too
    else:
        candidates = [(f, False) for f in _NAIVE_FORMATS] + [(f, True) for f in _AWARE_FORMATS]
        candidates.append(("epoch", False))
    if not formats and todo.any():  # most files use one format: try it first
        sample = text.filter(todo).head(1000)
        hits = [
            int(_parse_one(sample, fmt, aware).is_not_null().sum()) for fmt, aware in candidates
        ]
        candidates = [
            c for _, c in sorted(zip(hits, candidates, strict=True), key=lambda pair: -pair[0])
        ]
    for fmt, aware in candidates:
        if not todo.any():
            break
        parsed = _parse_one(text.filter(todo), fmt, aware)
        result = result.scatter(todo.arg_true(), parsed)
        todo = todo & result.is_null()
    return result


def _parse_one(values: pl.Series, fmt: str, aware: bool) -> pl.Series:
    """One timestamp format over string values (null where it does not apply)."""
    if fmt == "epoch":
        number = pl.col("s").cast(pl.Float64, strict=False)
        # Seconds, or milliseconds when the number is too large to be seconds (year > 5000).
        micros = pl.when(number.abs() >= 1e11).then(number * 1e3).otherwise(number * 1e6)
        return (
            pl.DataFrame({"s": values})
            .select(
                pl.when(pl.col("s").str.contains(r"^-?\d{1,13}(\.\d+)?$"))
                .then(micros)
                .cast(pl.Int64)
                .cast(TS_DTYPE)
            )
            .to_series()
        )
    parsed = values.str.to_datetime(fmt, strict=False, time_unit="us")
    return parsed.dt.convert_time_zone("UTC") if aware else parsed.dt.replace_time_zone("UTC")


def json_attributes(columns: Iterable[str]) -> pl.Expr:
    """A flat JSON object built from columns, or null when there are none."""
    columns = list(columns)
    if not columns:
        return pl.lit(None, pl.String)
    return pl.struct([pl.col(c) for c in columns]).struct.json_encode()


# -- conforming to the canonical schema ----------------------------------------------------------
def conform(
    frame: pl.DataFrame, schema: Mapping[str, pl.DataType], *, keep: Sequence[str] = ()
) -> pl.DataFrame:
    """Select the schema's columns in order, cast, and add missing ones as nulls.

    Columns named in ``keep`` (such as the private ``_line``) are carried along at the end.
    """
    exprs = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in schema.items()
    ]
    exprs += [pl.col(name) for name in keep if name in frame.columns]
    return frame.select(exprs)


def _preview(column: str) -> pl.Expr:
    """A long value as the rejects file shows it: its start and its length."""
    text = pl.col(column).cast(pl.String)
    length = text.str.len_chars()
    return (
        pl.when(length > 80)
        .then(text.str.slice(0, 80) + "… (" + length.cast(pl.String) + " characters)")
        .otherwise(text)
    )


def _too_long(column: str, limit: int, *, stripped: bool = False) -> Check:
    text = pl.col(column).str.strip_chars() if stripped else pl.col(column)
    return Check(
        f"{column} is longer than {limit:,} characters",
        column,
        text.str.len_chars() > limit,
        _preview(column),
    )


def id_checks(*columns: str) -> list[Check]:
    """Row rules for ids, as the API's ``Id`` has them: not blank, at most
    :attr:`Bounds.ID_LENGTH` characters (surrounding blanks aside), and no control character;
    the rejects file shows such a character as U+FFFD, not the character."""
    checks = []
    for column in columns:
        checks += [
            Check(f"{column} is blank", column, pl.col(column).str.strip_chars() == ""),
            _too_long(column, Bounds.ID_LENGTH, stripped=True),
            Check(
                f"{column} has a control character (a NUL, a line break, ...)",
                column,
                pl.col(column).str.contains(CONTROL_CHARACTERS),
                value=_preview(column).str.replace_all(CONTROL_CHARACTERS, "\ufffd"),
            ),
        ]
    return checks


def json_object_problem(
    text: str, *, entries: int, value_length: int, key_length: int = Bounds.KEY_LENGTH
) -> str | None:
    """What keeps ``text`` from being a flat JSON object within the API's bounds, or None.

    >>> json_object_problem('{"a": "xyz", "b": 2}', entries=1, value_length=2)
    'more than 1 entries'
    """
    try:
        value = json.loads(text)
    except ValueError:
        return "not valid JSON"
    if not isinstance(value, dict):
        return "not a JSON object"
    if len(value) > entries:
        return f"more than {entries} entries"
    for key, item in value.items():
        if len(key) > key_length:
            return f"a key longer than {key_length} characters"
        if isinstance(item, dict | list):
            return f"{key!r} is not a flat value"
        if isinstance(item, str) and len(item) > value_length:
            return f"the value of {key!r} is longer than {value_length} characters"
    return None


def _json_check(column: str, *, entries: int, value_length: int) -> Check:
    """Rows whose ``column`` is not a flat JSON object within bounds; only texts long enough to
    break one (longer than the shortest bound) are parsed."""
    short = min(Bounds.KEY_LENGTH, value_length, 5 * entries)

    def problems(values: pl.Series) -> pl.Series:
        long = (values.str.len_chars() > short).fill_null(False)
        found = pl.Series(column, [None] * len(values), dtype=pl.String)
        if long.any():
            texts = values.filter(long).to_list()
            found = found.scatter(
                long.arg_true(),
                pl.Series(
                    [
                        json_object_problem(t, entries=entries, value_length=value_length)
                        for t in texts
                    ],
                    dtype=pl.String,
                ),
            )
        return found

    problem = pl.col(column).map_batches(problems, return_dtype=pl.String)
    return Check(
        f"{column} is not a JSON object the API accepts ({entries} entries, "
        f"values of at most {value_length} characters)",
        column,
        problem.is_not_null(),
        problem,
    )


def ts_out_of_range(column: str = TS) -> pl.Expr:
    """True where a time lies before :data:`EARLIEST_TS` or more than
    :data:`FUTURE_TOLERANCE` after now."""
    latest = datetime.now(UTC) + FUTURE_TOLERANCE
    return (pl.col(column) < EARLIEST_TS) | (pl.col(column) > latest)


def _coordinate_checks() -> list[Check]:
    return [
        Check(f"{name} is not between -{limit} and {limit}", name, ~(pl.col(name).abs() <= limit))
        for name, limit in ((LAT, 90), (LON, 180))
    ]


def _price_checks() -> list[Check]:
    return [
        Check("negative price", PRICE, pl.col(PRICE) < 0),
        Check("price is not a finite number", PRICE, ~pl.col(PRICE).is_finite()),
    ]


def event_checks() -> list[Check]:
    """Row rules every canonical event must pass, whatever its source: those of the API's
    ``EventIn``."""
    event_type = pl.col(EVENT_TYPE)
    item_event = ~event_type.is_in(list(NON_ITEM_EVENT_TYPES))
    return [
        Check("missing event_type", EVENT_TYPE, event_type.is_null()),
        Check(
            "invalid event_type (lower-case letters, digits and _)",
            EVENT_TYPE,
            ~event_type.str.contains(EVENT_TYPE_PATTERN),
            _preview(EVENT_TYPE),
        ),
        Check("missing timestamp", TS, pl.col(TS).is_null()),
        Check(
            f"timestamp out of range (before {EARLIEST_TS:%Y-%m-%d} or more than "
            f"{FUTURE_TOLERANCE.days} day in the future)",
            TS,
            ts_out_of_range(TS),
        ),
        Check("missing item_id", ITEM_ID, item_event & pl.col(ITEM_ID).is_null()),
        Check(
            "missing user_id (and no basket or session to attach the event to)",
            USER_ID,
            pl.col(USER_ID).is_null() & pl.col(BASKET_ID).is_null() & pl.col(SESSION_ID).is_null(),
        ),
        *id_checks(EVENT_ID, USER_ID, ITEM_ID, BASKET_ID, SESSION_ID, RECOMMENDATION_ID),
        *_price_checks(),
        Check("value is not a finite number", VALUE, ~pl.col(VALUE).is_finite()),
        _json_check(
            CONTEXT, entries=Bounds.CONTEXT_ENTRIES, value_length=Bounds.CONTEXT_VALUE_LENGTH
        ),
    ]


def item_checks() -> list[Check]:
    """Row rules every catalogue item must pass: those of the API's ``ItemIn``."""
    return [
        Check("missing item_id", ITEM_ID, pl.col(ITEM_ID).is_null()),
        *id_checks(ITEM_ID),
        Check(
            "invalid entity_type (letters, digits and _, at most 40)",
            ENTITY_TYPE,
            ~pl.col(ENTITY_TYPE).str.contains(ENTITY_TYPE_PATTERN),
            _preview(ENTITY_TYPE),
        ),
        _too_long(TITLE, Bounds.TITLE_LENGTH),
        _too_long(CATEGORY, Bounds.CATEGORY_LENGTH),
        _too_long(TEXT, Bounds.TEXT_LENGTH),
        *_price_checks(),
        *_coordinate_checks(),
        _json_check(
            ATTRIBUTES, entries=Bounds.ATTRIBUTES, value_length=Bounds.ATTRIBUTE_VALUE_LENGTH
        ),
    ]


def user_checks() -> list[Check]:
    """Row rules every user row must pass."""
    return [
        Check("missing user_id", USER_ID, pl.col(USER_ID).is_null()),
        *id_checks(USER_ID),
        *_coordinate_checks(),
        _json_check(
            ATTRIBUTES, entries=Bounds.ATTRIBUTES, value_length=Bounds.ATTRIBUTE_VALUE_LENGTH
        ),
    ]


def stable_hash(parts: Sequence[pl.Expr], length: int = 32) -> pl.Expr:
    """A hex digest (BLAKE3, first ``length`` characters) of values joined field by field.

    Stable across processes, machines and library versions, unlike ``Expr.hash``.
    """
    joined = plh.concat_str([p.cast(pl.String).fill_null("\x00") for p in parts], separator="\x1f")
    return joined.chash.blake3().str.slice(0, length)


class EventIdAssigner:
    """Fills missing ``event_id`` values with a stable hash of the record, chunk after chunk.

    The id is the 128-bit XXH3 hash (a fixed, versioned algorithm, written in decimal) of the
    source name and every canonical field. A record identical to an earlier one of the same load
    (a real double purchase) also hashes its occurrence number, counted across chunks, so the two
    stay two events while loading the same file twice adds nothing. Occurrences are counted by a
    64-bit hash of the record: two different records sharing it would only shift an occurrence
    number, never merge two ids.
    """

    def __init__(self) -> None:
        self._seen = np.empty(0, dtype=np.uint64)  # sorted, unique
        self._counts = np.empty(0, dtype=np.int64)

    def __call__(self, events: pl.DataFrame) -> pl.DataFrame:
        if events.height == 0:
            return events
        key_columns = [c for c in EVENTS_SCHEMA if c not in (EVENT_ID, RECOMMENDATION_ID)]
        fields = [pl.col(c).dt.epoch("us") if c == TS else pl.col(c) for c in key_columns]
        joined = plh.concat_str(
            [f.cast(pl.String).fill_null("\x00") for f in fields], separator="\x1f"
        )
        keyed = events.with_columns(joined.alias("__record"))
        record = plh.col("__record")
        keyed = keyed.with_columns(
            record.nchash.xxh3_64().alias("__key"), record.nchash.xxh3_128().alias("__hash")
        ).drop("__record")
        keys = keyed.get_column("__key").to_numpy()
        occurrence = self._occurrence(keys)
        repeated = pl.col("__occurrence") > 0
        generated = (
            pl.when(repeated)
            .then(
                plh.concat_str(
                    [pl.col("__hash").cast(pl.String), pl.col("__occurrence").cast(pl.String)],
                    separator="#",
                ).nchash.xxh3_128()
            )
            .otherwise(pl.col("__hash"))
            .cast(pl.String)
        )
        return (
            keyed.with_columns(pl.Series("__occurrence", occurrence))
            .with_columns(pl.coalesce(pl.col(EVENT_ID), generated).alias(EVENT_ID))
            .drop("__key", "__hash", "__occurrence")
        )

    def _occurrence(self, keys: np.ndarray) -> np.ndarray:
        """How many identical records came before each one, in this chunk and earlier ones."""
        unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        occurrence = np.zeros(keys.size, dtype=np.int64)
        repeated = counts[inverse] > 1
        if repeated.any():  # rare: number identical records of this chunk in order
            index = np.flatnonzero(repeated)
            order = index[np.argsort(inverse[index], kind="stable")]
            groups = inverse[order]
            starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
            run = np.arange(order.size) - np.repeat(starts, np.diff(np.append(starts, order.size)))
            occurrence[order] = run
        if self._seen.size:
            position = np.minimum(np.searchsorted(self._seen, unique), self._seen.size - 1)
            before = np.where(self._seen[position] == unique, self._counts[position], 0)
            occurrence += before[inverse]
        self._remember(unique, counts)
        return occurrence

    def _remember(self, unique: np.ndarray, counts: np.ndarray) -> None:
        merged_keys = np.concatenate((self._seen, unique))
        merged_counts = np.concatenate((self._counts, counts))
        order = np.argsort(merged_keys, kind="stable")  # two sorted runs: linear time
        merged_keys, merged_counts = merged_keys[order], merged_counts[order]
        first = np.concatenate(([True], merged_keys[1:] != merged_keys[:-1]))
        starts = np.flatnonzero(first)
        self._seen = merged_keys[starts]
        self._counts = np.add.reduceat(merged_counts, starts)


def add_event_ids(events: pl.DataFrame) -> pl.DataFrame:
    """Fill missing event ids of one complete load (see :class:`EventIdAssigner`)."""
    return EventIdAssigner()(events)
