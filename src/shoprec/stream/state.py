"""The live per-user state (DESIGN §6): recent items, counters and vectors, applied exactly once.

Two implementations of :class:`~shoprec.stream.protocols.LiveState`, opened by URL with
:func:`open_state`:

``memory://?recent=N&applied=N``
    :class:`MemoryLiveState`: dictionaries behind one lock, for one process (the embedded
    default and the tests).
``redis://host:port/db?prefix=NAME&recent=N&applied=N``
    :class:`RedisLiveState`: shared by every API replica and worker. One Lua script applies an
    event atomically, so two workers handed the same event (a re-delivery) count it once.
    Needs the ``redis`` extra (``pip install 'shoprec[redis]'``).

Both also offer ``apply_many(events)`` (how many were new) and ``apply_each(events)`` (whether
each was new), which send a whole batch to Redis in one round trip.

A user's stored vectors are folded in from their recent items, and each remembers which: its
*basis*, a fingerprint of those items (:func:`history_basis`). :meth:`live_user` reads the recent
items and only the vectors whose basis they still are (one round trip on Redis), so a reader never
ranks with a vector that misses an event applied since: it folds the history in itself instead,
until a worker folds that user's history in again.

``recent`` bounds each user's recent items (default 50) and ``applied`` the remembered event
ids (default 1,000,000, the oldest forgotten first): an event is applied exactly once as long
as its id is among the last ``applied`` ids applied, which re-deliveries of a bus are.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

import numpy as np

from shoprec.data.schema import EVENT_ID, EVENT_TYPE, ITEM_ID, USER_ID
from shoprec.exceptions import StateError, StateUnavailableError
from shoprec.stream.urls import UrlSyntax

try:  # the redis extra; a redis:// URL without it fails when parsed (shoprec.compat.require)
    import redis
    from redis.exceptions import NoScriptError
except ImportError:  # pragma: no cover - the test install has every extra
    redis = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_APPLIED_LIMIT",
    "DEFAULT_PREFIX",
    "DEFAULT_RECENT_LIMIT",
    "MemoryLiveState",
    "RedisLiveState",
    "StateError",
    "StateUnavailableError",
    "history_basis",
    "open_state",
]

DEFAULT_RECENT_LIMIT = 50
DEFAULT_APPLIED_LIMIT = 1_000_000
DEFAULT_PREFIX = "shoprec:"


# -- events -------------------------------------------------------------------------------------
class _Event(NamedTuple):
    """The fields of an event the live state uses, as strings; ``item_id`` None when absent."""

    event_id: str
    user_id: str
    item_id: str | None
    event_type: str


def _optional_id(event: Mapping[str, Any], name: str) -> str | None:
    """The field as a string id; None when absent, None or empty."""
    value = event.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"event {name} must be a string or an integer, got {value!r}")
    return str(value)


def _required_id(event: Mapping[str, Any], name: str) -> str:
    value = _optional_id(event, name)
    if value is None:
        raise ValueError(f"event has no {name}: {dict(event)!r}")
    return value


def _parse_event(event: Mapping[str, Any]) -> _Event:
    """The event's ids and type; ValueError naming the field when one is missing or not an id.

    ``item_id`` may be absent, None or empty (a pageview): such an event counts for the user
    but adds no recent item and no item counter.
    """
    if not isinstance(event, Mapping):
        raise ValueError(f"an event must be a mapping, got {type(event).__name__}")
    return _Event(
        event_id=_required_id(event, EVENT_ID),
        user_id=_required_id(event, USER_ID),
        item_id=_optional_id(event, ITEM_ID),
        event_type=_required_id(event, EVENT_TYPE),
    )


def history_basis(history: Sequence[tuple[str, str]]) -> str:
    """A fingerprint of a user's recent ``(item_id, event_type)`` events, oldest first: the
    basis of the vectors folded in from them (equal histories, equal bases)."""
    text = json.dumps(history, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _vector_rows(
    vectors: Sequence[tuple[str, str, np.ndarray]],
    histories: Mapping[str, Sequence[tuple[str, str]]] | None,
) -> list[tuple[str, str, np.ndarray, str]]:
    """``(user_id, name, float32 copy, basis)`` of vectors to store; the basis from the history
    each user's vectors were folded in from, empty where ``histories`` has no such user (a
    basis no history has: never served by ``live_user``)."""
    bases = {user: history_basis(history) for user, history in (histories or {}).items()}
    return [
        (user, name, _float32_vector(vector), bases.get(user, "")) for user, name, vector in vectors
    ]


def _float32_vector(vector: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy (the caller may change its array afterwards)."""
    return np.array(vector, dtype=np.float32, order="C", copy=True)


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# -- memory -------------------------------------------------------------------------------------
class MemoryLiveState:
    """The live state in this process's memory; every method holds one lock (thread-safe)."""

    def __init__(
        self,
        recent_limit: int = DEFAULT_RECENT_LIMIT,
        applied_limit: int = DEFAULT_APPLIED_LIMIT,
    ) -> None:
        self.recent_limit = _positive(recent_limit, "recent_limit")
        self.applied_limit = _positive(applied_limit, "applied_limit")
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._applied: set[str] = set()
        self._applied_order: deque[str] = deque()
        self._total = 0
        self._recent: dict[str, deque[tuple[str, str]]] = {}
        self._user_counts: dict[str, Counter[str]] = {}
        self._item_counts: dict[str, Counter[str]] = {}
        self._vectors: dict[tuple[str, str], tuple[np.ndarray, str]] = {}
        self._item_vectors: dict[tuple[str, str, str], np.ndarray] = {}

    def apply(self, event: dict[str, Any]) -> bool:
        parsed = _parse_event(event)
        with self._lock:
            return self._apply(parsed)

    def apply_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Apply events in order (each exactly once); how many were new."""
        return sum(self.apply_each(events))

    def apply_each(self, events: Iterable[Mapping[str, Any]]) -> list[bool]:
        """Apply events in order (each exactly once); whether each was new. Every event is
        checked before any is applied."""
        parsed = [_parse_event(event) for event in events]
        with self._lock:
            return [self._apply(event) for event in parsed]

    def _apply(self, event: _Event) -> bool:
        if event.event_id in self._applied:
            return False
        self._remember(event.event_id)
        self._user_counts.setdefault(event.user_id, Counter())[event.event_type] += 1
        if event.item_id is not None:
            recent = self._recent.setdefault(event.user_id, deque(maxlen=self.recent_limit))
            recent.append((event.item_id, event.event_type))
            self._item_counts.setdefault(event.item_id, Counter())[event.event_type] += 1
        return True

    def _remember(self, event_id: str) -> None:
        self._applied.add(event_id)
        self._applied_order.append(event_id)
        self._total += 1
        while len(self._applied_order) > self.applied_limit:
            self._applied.discard(self._applied_order.popleft())

    def recent(self, user_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._recent.get(user_id, ()))

    def recent_many(self, user_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        with self._lock:
            return {user: list(self._recent.get(user, ())) for user in user_ids}

    def set_vector(self, user_id: str, name: str, vector: np.ndarray) -> None:
        self.set_vectors([(user_id, name, vector)])

    def set_vectors(
        self,
        vectors: Sequence[tuple[str, str, np.ndarray]],
        histories: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        stored = _vector_rows(vectors, histories)
        with self._lock:
            for user, name, vector, basis in stored:
                self._vectors[user, name] = (vector, basis)

    def vector(self, user_id: str, name: str) -> np.ndarray | None:
        with self._lock:
            stored = self._vectors.get((user_id, name))
        return None if stored is None else stored[0].copy()

    def live_user(
        self, user_id: str, names: Sequence[str]
    ) -> tuple[list[tuple[str, str]], dict[str, np.ndarray]]:
        with self._lock:
            history = list(self._recent.get(user_id, ()))
            stored = [(name, self._vectors.get((user_id, name))) for name in names]
        found = [(name, row) for name, row in stored if row is not None]
        if not history or not found:
            return history, {}
        basis = history_basis(history)
        return history, {name: vector.copy() for name, (vector, of) in found if of == basis}

    def set_item_vectors(self, space: str, vectors: Sequence[tuple[str, str, np.ndarray]]) -> None:
        stored = [(kind, item, _float32_vector(vector)) for kind, item, vector in vectors]
        with self._lock:
            for kind, item, vector in stored:
                self._item_vectors[space, kind, item] = vector

    def item_vectors(self, space: str, items: Sequence[tuple[str, str]]) -> list[np.ndarray | None]:
        with self._lock:
            found = [self._item_vectors.get((space, kind, item)) for kind, item in items]
        return [None if vector is None else vector.copy() for vector in found]

    def user_counters(self, user_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._user_counts.get(user_id, {}))

    def item_counters(self, item_id: str) -> dict[str, int]:
        with self._lock:
            return dict(self._item_counts.get(item_id, {}))

    def applied_count(self) -> int:
        with self._lock:
            return self._total

    def was_applied(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._applied

    def clear(self) -> None:
        with self._lock:
            self._reset()

    def close(self) -> None:
        """Nothing to release (for symmetry with :class:`RedisLiveState`)."""


# -- redis --------------------------------------------------------------------------------------
# Applies one event atomically and exactly once. Every key is checked before the first write, so
# a key of the wrong type (not ours) fails the whole event instead of half of it.
#   KEYS: 1 applied ids (sorted set, score = sequence number), 2 applied total (string),
#         3 user counters (hash), and only when the event has an item:
#         4 user's recent items (list), 5 item counters (hash)
#   ARGV: 1 event id, 2 event type, 3 recent entry (JSON), 4 recent limit, 5 applied limit
_APPLY_LUA = """
local expected = {'zset', 'string', 'hash', 'list', 'hash'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= expected[i] then
    return redis.error_reply('WRONGTYPE shoprec live state key ' .. key .. ' is a ' .. kind)
  end
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local seq = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], seq, ARGV[1])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if excess > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
if #KEYS == 5 then
  redis.call('RPUSH', KEYS[4], ARGV[3])
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[4]), -1)
  redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
end
return 1
"""

_SCAN_COUNT = 1000
_DELETE_BATCH = 500


P = ParamSpec("P")
R = TypeVar("R")


def _redis_call(
    method: Callable[Concatenate[RedisLiveState, P], R],
) -> Callable[Concatenate[RedisLiveState, P], R]:
    """redis-py's errors in ``method`` as :class:`StateError` (unreachable:
    :class:`StateUnavailableError`), saying which state and what went wrong."""

    @functools.wraps(method)
    def call(state: RedisLiveState, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(state, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StateUnavailableError(f"live state {state.where} is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise StateError(f"live state {state.where}: {exc}") from exc

    return call


class RedisLiveState:
    """The live state in Redis, every key under ``prefix``; safe for any number of processes.

    Keys: ``applied`` (sorted set of applied event ids, scored by their sequence number and
    trimmed to the newest ``applied_limit``: memory bounded by count, like the memory state),
    ``applied_total`` (distinct events ever applied), ``recent:<user>`` (list of JSON
    ``[item_id, event_type]``, oldest first, trimmed to ``recent_limit``), ``user:<user>`` and
    ``item:<item>`` (hashes event type → count), ``vector:<user>`` (hash: ``v:<name>`` the
    raw float32 bytes, ``s:<name>`` the shape as ``"3,4"``, ``b:<name>`` its basis).

    All keys of one state are touched by one script, so under Redis Cluster give the prefix a
    hash tag (``prefix={shoprec}:``) to keep them in one slot.
    """

    def __init__(
        self,
        client: Any,
        prefix: str = DEFAULT_PREFIX,
        recent_limit: int = DEFAULT_RECENT_LIMIT,
        applied_limit: int = DEFAULT_APPLIED_LIMIT,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty (clear() would delete every key)")
        self.client = client
        self.prefix = prefix
        where = client.connection_pool.connection_kwargs
        self.where = (  # for messages: where it is, never a password
            f"redis://{where.get('host', '?')}:{where.get('port', '?')}/{where.get('db', 0)} "
            f"(prefix {prefix!r})"
        )
        self.recent_limit = _positive(recent_limit, "recent_limit")
        self.applied_limit = _positive(applied_limit, "applied_limit")
        self._apply_script = client.register_script(_APPLY_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        recent_limit: int = DEFAULT_RECENT_LIMIT,
        applied_limit: int = DEFAULT_APPLIED_LIMIT,
        **redis_options: Any,
    ) -> RedisLiveState:
        """A state on a new client for ``url`` (``redis://host:port/db``, redis-py's URL)."""
        client = redis.Redis.from_url(url, decode_responses=False, **redis_options)
        return cls(client, prefix=prefix, recent_limit=recent_limit, applied_limit=applied_limit)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _script_call(self, event: _Event) -> tuple[list[str], list[str | int]]:
        keys = [self._key("applied"), self._key("applied_total"), self._key("user", event.user_id)]
        entry = ""
        if event.item_id is not None:
            keys += [self._key("recent", event.user_id), self._key("item", event.item_id)]
            entry = json.dumps([event.item_id, event.event_type])
        args: list[str | int] = [
            event.event_id,
            event.event_type,
            entry,
            self.recent_limit,
            self.applied_limit,
        ]
        return keys, args

    @_redis_call
    def apply(self, event: dict[str, Any]) -> bool:
        keys, args = self._script_call(_parse_event(event))
        return bool(self._apply_script(keys=keys, args=args))

    @_redis_call
    def apply_many(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Apply events in order, each atomically and exactly once, in one round trip; how
        many were new (see :meth:`apply_each`)."""
        return sum(self.apply_each(events))

    @_redis_call
    def apply_each(self, events: Iterable[Mapping[str, Any]]) -> list[bool]:
        """Apply events in order, each atomically and exactly once, in one round trip (a
        pipeline of EVALSHA calls); whether each was new. Every event is checked before any is
        sent. The batch as a whole is not one transaction: after a failure the events that
        were applied stay applied, and applying the batch again applies only the rest."""
        calls = [self._script_call(_parse_event(event)) for event in events]
        if not calls:
            return []
        results = self._evalsha_pipeline(calls)
        missing = [n for n, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:  # Redis restarted or its scripts were flushed: load once, send those again
            self._apply_script.sha = self.client.script_load(_APPLY_LUA)
            retried = self._evalsha_pipeline([calls[n] for n in missing])
            for n, result in zip(missing, retried, strict=True):
                results[n] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [bool(result) for result in results]

    def _evalsha_pipeline(self, calls: list[tuple[list[str], list[str | int]]]) -> list[Any]:
        """The script's replies (or errors) for each call, in one round trip. (A redis-py
        pipeline of Script calls would first ask SCRIPT EXISTS: a second round trip.)"""
        with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self._apply_script.sha, len(keys), *keys, *args)
            results: list[Any] = pipe.execute(raise_on_error=False)
        return results

    @_redis_call
    def recent(self, user_id: str) -> list[tuple[str, str]]:
        entries = self.client.lrange(self._key("recent", user_id), 0, -1)
        return [_decode_recent(entry) for entry in entries]

    @_redis_call
    def recent_many(self, user_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """:meth:`recent` of many users in one round trip."""
        users = list(user_ids)
        with self.client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.lrange(self._key("recent", user), 0, -1)
            answers = pipe.execute()
        return {
            user: [_decode_recent(entry) for entry in entries]
            for user, entries in zip(users, answers, strict=True)
        }

    def set_vector(self, user_id: str, name: str, vector: np.ndarray) -> None:
        self.set_vectors([(user_id, name, vector)])

    @_redis_call
    def set_vectors(
        self,
        vectors: Sequence[tuple[str, str, np.ndarray]],
        histories: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        """:meth:`set_vector` for many ``(user_id, name, vector)`` in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for user_id, name, stored, basis in _vector_rows(vectors, histories):
                shape = ",".join(str(size) for size in stored.shape)
                # the basis in the same write as the vector (a reader sees both or neither);
                # an empty one for a vector stored without its history, never served
                fields = {f"v:{name}": stored.tobytes(), f"s:{name}": shape, f"b:{name}": basis}
                pipe.hset(self._key("vector", user_id), mapping=fields)
            pipe.execute()

    @_redis_call
    def vector(self, user_id: str, name: str) -> np.ndarray | None:
        data, shape = self.client.hmget(self._key("vector", user_id), [f"v:{name}", f"s:{name}"])
        return _decode_vector(data, shape)

    @_redis_call
    def live_user(
        self, user_id: str, names: Sequence[str]
    ) -> tuple[list[tuple[str, str]], dict[str, np.ndarray]]:
        """The recent items and the vectors of ``names`` based on them, in one round trip."""
        fields = [f"{part}:{name}" for name in names for part in ("v", "s", "b")]
        with self.client.pipeline(transaction=False) as pipe:
            pipe.lrange(self._key("recent", user_id), 0, -1)
            if fields:
                pipe.hmget(self._key("vector", user_id), fields)
            answers = pipe.execute()
        history = [_decode_recent(entry) for entry in answers[0]]
        stored = answers[1] if fields else []
        if not history or not any(stored[2::3]):
            return history, {}
        basis = history_basis(history).encode()
        vectors = {}
        for position, name in enumerate(names):
            data, shape, based_on = stored[3 * position : 3 * position + 3]
            vector = _decode_vector(data, shape) if based_on == basis else None
            if vector is not None:
                vectors[name] = vector
        return history, vectors

    @_redis_call
    def set_item_vectors(self, space: str, vectors: Sequence[tuple[str, str, np.ndarray]]) -> None:
        """One hash per vector space, a field per ``entity_type`` and ``item_id``."""
        if not vectors:
            return
        self.client.hset(
            self._key("itemvec", space),
            mapping={
                _item_field(kind, item): _float32_vector(vector).tobytes()
                for kind, item, vector in vectors
            },
        )

    @_redis_call
    def item_vectors(self, space: str, items: Sequence[tuple[str, str]]) -> list[np.ndarray | None]:
        if not items:
            return []
        fields = [_item_field(kind, item) for kind, item in items]
        found = self.client.hmget(self._key("itemvec", space), fields)
        return [None if data is None else np.frombuffer(data, np.float32).copy() for data in found]

    @_redis_call
    def user_counters(self, user_id: str) -> dict[str, int]:
        return _decode_counters(self.client.hgetall(self._key("user", user_id)))

    @_redis_call
    def item_counters(self, item_id: str) -> dict[str, int]:
        return _decode_counters(self.client.hgetall(self._key("item", item_id)))

    @_redis_call
    def applied_count(self) -> int:
        total = self.client.get(self._key("applied_total"))
        return 0 if total is None else int(total)

    @_redis_call
    def was_applied(self, event_id: str) -> bool:
        return self.client.zscore(self._key("applied"), event_id) is not None

    @_redis_call
    def clear(self) -> None:
        """Delete every key under the prefix (SCAN + DEL in batches; never FLUSHDB)."""
        pattern = _glob_escape(self.prefix) + "*"
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=pattern, count=_SCAN_COUNT):
            batch.append(key)
            if len(batch) >= _DELETE_BATCH:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)

    def close(self) -> None:
        """Release the client's connections."""
        self.client.close()


def _item_field(entity_type: str, item_id: str) -> str:
    # Entity types are letters, digits and underscores: the first colon ends one.
    return f"{entity_type}:{item_id}"


def _decode_vector(data: bytes | None, shape: bytes | None) -> np.ndarray | None:
    """A stored vector from its raw float32 bytes and ``"3,4"`` shape (None if not stored)."""
    if data is None:
        return None
    dims = (-1,) if shape is None else tuple(int(n) for n in shape.decode().split(",") if n)
    return np.frombuffer(data, dtype=np.float32).reshape(dims).copy()


def _decode_recent(entry: bytes) -> tuple[str, str]:
    item_id, event_type = json.loads(entry)
    return str(item_id), str(event_type)


def _decode_counters(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    return {kind.decode(): int(count) for kind, count in raw.items()}


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


# -- opening by URL ----------------------------------------------------------------------------
_URLS = UrlSyntax(
    "live state",
    memory={"recent": int, "applied": int},
    redis={"prefix": str, "recent": int, "applied": int},
)
_KEYWORDS = {"prefix": "prefix", "recent": "recent_limit", "applied": "applied_limit"}
"""Each option's keyword in the constructors, which open_state also takes as its name."""


def open_state(url: str, **options: Any) -> MemoryLiveState | RedisLiveState:
    """The live state at ``url``: ``memory://`` or ``redis://host:port/db`` (also ``rediss://``).

    The query options ``prefix`` (Redis only), ``recent`` and ``applied`` may also be given as
    keyword options of the same names (or ``recent_limit`` and ``applied_limit``); those are
    defaults, which the URL's own query options override. A Redis URL may also carry redis-py's
    connection options (``socket_timeout=5``). An unknown scheme or a bad option raises
    :class:`~shoprec.exceptions.ConfigError` naming the URL and what is supported; nothing
    connects to Redis before the first call.
    """
    parsed = _URLS.parse(url, _by_option_name(url, options))
    settings = {_KEYWORDS[name]: value for name, value in parsed.options.items()}
    try:
        if parsed.backend == "memory":
            return MemoryLiveState(**settings)
        return RedisLiveState.from_url(parsed.connection_url, **settings)
    except (TypeError, ValueError) as exc:
        raise _URLS.error(url, str(exc)) from exc


def _by_option_name(url: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options by their name in the URL (``recent_limit`` is ``recent``); one given
    under both names raises ConfigError."""
    names = {keyword: name for name, keyword in _KEYWORDS.items()}
    named: dict[str, Any] = {}
    for given, value in options.items():
        name = names.get(given, given)
        if name in named:
            raise _URLS.error(url, f"option {name!r} is given twice")
        named[name] = value
    return named
