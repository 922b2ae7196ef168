"""The live state: one contract over memory:// and redis://, then what only Redis does."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis

from shoprec.exceptions import ConfigError
from shoprec.stream.state import (
    MemoryLiveState,
    RedisLiveState,
    StateError,
    StateUnavailableError,
    history_basis,
    open_state,
)
from tests.stream.conftest import delete_keys

OpenState = Callable[..., MemoryLiveState | RedisLiveState]


def event(
    event_id: str, user: str = "u1", item: str | None = "i1", kind: str = "view"
) -> dict[str, Any]:
    """An event in the canonical columns; ``item=None`` leaves ``item_id`` out."""
    row: dict[str, Any] = {
        "event_id": event_id,
        "user_id": user,
        "event_type": kind,
        "ts": "2024-05-01T10:00:00+00:00",
    }
    if item is not None:
        row["item_id"] = item
    return row


def with_query(url: str, **query: str) -> str:
    extra = "&".join(f"{name}={value}" for name, value in query.items())
    return f"{url}{'&' if urlsplit(url).query else '?'}{extra}"


@pytest.fixture
def redis_state(redis_url: str) -> Iterator[OpenState]:
    """Opens Redis states under a prefix unique to the test; deletes its keys afterwards."""
    base = redis_url.split("?", 1)[0]  # without the bus's options (stream=...)
    prefix = f"shoprec-test-state-{uuid.uuid4().hex}:"
    opened: list[RedisLiveState] = []

    def open_redis(**options: Any) -> RedisLiveState:
        state = open_state(with_query(base, prefix=prefix), **options)
        assert isinstance(state, RedisLiveState)
        opened.append(state)
        return state

    yield open_redis
    for state in opened:
        state.close()
    delete_keys(base, prefix)


@pytest.fixture(params=["memory", "redis"])
def open_live(request: pytest.FixtureRequest) -> OpenState:
    """Opens a live state of the parametrized kind (keyword options passed to open_state)."""
    if request.param == "redis":
        opener: OpenState = request.getfixturevalue("redis_state")
        return opener
    return lambda **options: open_state("memory://", **options)


# -- the contract -------------------------------------------------------------------------------
def test_apply_is_exactly_once_by_event_id(open_live: OpenState) -> None:
    state = open_live()
    assert state.apply(event("e1")) is True
    assert state.apply(event("e1")) is False
    assert state.apply(event("e1", user="u2", item="i9", kind="purchase")) is False
    assert state.applied_count() == 1
    assert state.user_counters("u1") == {"view": 1}
    assert state.user_counters("u2") == {}
    assert state.recent("u1") == [("i1", "view")]


def test_recent_items_are_oldest_first_and_bounded(open_live: OpenState) -> None:
    state = open_live(recent_limit=3)
    for n in range(5):
        state.apply(event(f"e{n}", item=f"i{n}", kind="purchase" if n % 2 else "view"))
    state.apply(event("other", user="u2", item="x"))
    assert state.recent("u1") == [("i2", "view"), ("i3", "purchase"), ("i4", "view")]
    assert state.recent("u2") == [("x", "view")]
    assert state.recent("nobody") == []


def test_counters_per_user_and_item_by_type(open_live: OpenState) -> None:
    state = open_live()
    state.apply(event("e1", user="u1", item="a", kind="view"))
    state.apply(event("e2", user="u1", item="a", kind="view"))
    state.apply(event("e3", user="u1", item="b", kind="purchase"))
    state.apply(event("e4", user="u2", item="a", kind="add_to_cart"))
    assert state.user_counters("u1") == {"view": 2, "purchase": 1}
    assert state.user_counters("u2") == {"add_to_cart": 1}
    assert state.item_counters("a") == {"view": 2, "add_to_cart": 1}
    assert state.item_counters("b") == {"purchase": 1}
    assert state.item_counters("nothing") == {}


def test_event_without_item_counts_for_the_user_only(open_live: OpenState) -> None:
    state = open_live()
    assert state.apply(event("p1", item=None, kind="pageview")) is True
    assert state.apply({**event("p2", kind="search"), "item_id": None}) is True
    assert state.apply(event("p1", item=None, kind="pageview")) is False
    assert state.user_counters("u1") == {"pageview": 1, "search": 1}
    assert state.recent("u1") == []
    assert state.item_counters("None") == {}
    assert state.applied_count() == 2
    assert state.was_applied("p1")


def test_integer_ids_are_read_as_strings(open_live: OpenState) -> None:
    state = open_live()
    assert state.apply({"event_id": 7, "user_id": 42, "item_id": 9, "event_type": "view"})
    assert not state.apply(event("7"))
    assert state.recent("42") == [("9", "view")]


@pytest.mark.parametrize(
    "bad",
    [
        {"user_id": "u1", "item_id": "i1", "event_type": "view"},
        {"event_id": "e1", "item_id": "i1", "event_type": "view"},
        {"event_id": "e1", "user_id": "u1", "item_id": "i1"},
        {"event_id": "", "user_id": "u1", "event_type": "view"},
        {"event_id": "e1", "user_id": ["u1"], "event_type": "view"},
    ],
)
def test_invalid_event_is_rejected_and_changes_nothing(
    open_live: OpenState, bad: dict[str, Any]
) -> None:
    state = open_live()
    with pytest.raises(ValueError, match="event"):
        state.apply(bad)
    with pytest.raises(ValueError, match="event"):
        state.apply_many([event("ok"), bad])
    assert state.applied_count() == 0
    assert not state.was_applied("ok")


def test_vectors_round_trip_as_float32(open_live: OpenState) -> None:
    state = open_live()
    content = np.array([0.5, -1.25, 3.0], dtype=np.float64)
    factors = np.arange(12, dtype=np.float32).reshape(3, 4)
    state.set_vector("u1", "scalar", np.float64(2.5))
    scalar = state.vector("u1", "scalar")
    assert scalar is not None
    assert (scalar.shape, scalar.dtype, float(scalar)) == ((), np.float32, 2.5)
    state.set_vector("u1", "content", content)
    state.set_vector("u1", "collaborative", factors)
    content[0] = 99.0  # the stored vector is a copy

    got = state.vector("u1", "content")
    assert got is not None
    assert got.dtype == np.float32
    assert got.shape == (3,)
    np.testing.assert_array_equal(got, [0.5, -1.25, 3.0])
    got[1] = 7.0  # and so is the returned one
    np.testing.assert_array_equal(state.vector("u1", "content"), [0.5, -1.25, 3.0])

    got_factors = state.vector("u1", "collaborative")
    assert got_factors is not None
    assert got_factors.dtype == np.float32
    assert got_factors.shape == (3, 4)
    np.testing.assert_array_equal(got_factors, factors)

    state.set_vector("u1", "content", np.zeros(2))
    np.testing.assert_array_equal(state.vector("u1", "content"), [0.0, 0.0])
    assert state.vector("u1", "missing") is None
    assert state.vector("u2", "content") is None


def test_item_vectors_by_space_entity_type_and_id(open_live: OpenState) -> None:
    state = open_live()
    assert state.item_vectors("tfidf:1", []) == []
    state.set_item_vectors("tfidf:1", [])
    state.set_item_vectors(
        "tfidf:1",
        [("listing", "a", np.array([1.0, 2.0])), ("candidate", "a", np.array([3.0, 4.0]))],
    )
    state.set_item_vectors("minilm:2", [("listing", "a", np.array([9.0]))])
    listing, candidate, missing, other = state.item_vectors(
        "tfidf:1", [("listing", "a"), ("candidate", "a"), ("listing", "b"), ("item", "a")]
    )
    assert listing is not None
    assert listing.dtype == np.float32
    np.testing.assert_array_equal(listing, [1.0, 2.0])
    np.testing.assert_array_equal(candidate, [3.0, 4.0])
    assert missing is None
    assert other is None
    np.testing.assert_array_equal(state.item_vectors("minilm:2", [("listing", "a")])[0], [9.0])
    state.set_item_vectors("tfidf:1", [("listing", "a", np.array([0.0, 1.0]))])  # replaced
    np.testing.assert_array_equal(state.item_vectors("tfidf:1", [("listing", "a")])[0], [0.0, 1.0])


def test_applied_count_and_was_applied(open_live: OpenState) -> None:
    state = open_live()
    assert state.applied_count() == 0
    assert not state.was_applied("e1")
    for n in range(4):
        state.apply(event(f"e{n}"))
    state.apply(event("e2"))
    assert state.applied_count() == 4
    assert state.was_applied("e1")
    assert not state.was_applied("e9")


def test_applied_ids_are_bounded_oldest_forgotten_first(open_live: OpenState) -> None:
    state = open_live(applied_limit=3)
    for n in range(5):
        state.apply(event(f"e{n}"))
    assert [state.was_applied(f"e{n}") for n in range(5)] == [False, False, True, True, True]
    assert state.apply(event("e4")) is False
    assert state.applied_count() == 5  # distinct events ever applied, not remembered ids


def test_apply_many_counts_new_events(open_live: OpenState) -> None:
    state = open_live()
    state.apply(event("e0"))
    batch = [event(f"e{n}", item=f"i{n}") for n in range(4)] + [event("e1"), event("e3")]
    assert state.apply_many(batch) == 3
    assert state.apply_many(batch) == 0
    assert state.apply_many([]) == 0
    assert state.applied_count() == 4
    # e0 was applied alone (item i1), so the batch's e0 (item i0) left no trace
    assert [item for item, _ in state.recent("u1")] == ["i1", "i1", "i2", "i3"]


def test_apply_each_tells_which_events_were_new(open_live: OpenState) -> None:
    state = open_live()
    state.apply(event("e1"))
    assert state.apply_each([event("e1"), event("e2"), event("e2"), event("e3")]) == [
        False,
        True,
        False,
        True,
    ]
    assert state.apply_each([]) == []


def test_clear_forgets_everything(open_live: OpenState) -> None:
    state = open_live()
    state.apply(event("e1"))
    state.set_vector("u1", "content", np.ones(3))
    state.clear()
    assert state.applied_count() == 0
    assert not state.was_applied("e1")
    assert state.recent("u1") == []
    assert state.user_counters("u1") == {}
    assert state.item_counters("i1") == {}
    assert state.vector("u1", "content") is None
    assert state.apply(event("e1")) is True


def test_concurrent_apply_counts_each_event_once(open_live: OpenState) -> None:
    state = open_live(recent_limit=1000)
    events = [
        event(f"e{n}", item=f"i{n % 7}", kind=("view", "purchase")[n % 2]) for n in range(200)
    ]
    threads = 4
    new: list[int] = [0] * threads
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        mine = events[:]
        random.Random(index).shuffle(mine)
        barrier.wait()
        new[index] = sum(state.apply(row) for row in mine[:100]) + state.apply_many(mine[100:])

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sum(new) == 200
    assert state.applied_count() == 200
    assert state.user_counters("u1") == {"view": 100, "purchase": 100}
    assert sum(sum(state.item_counters(f"i{n}").values()) for n in range(7)) == 200
    assert len(state.recent("u1")) == 200


# -- open_state ---------------------------------------------------------------------------------
def test_open_memory_with_options() -> None:
    state = open_state("memory://?recent=2&applied=10")
    assert isinstance(state, MemoryLiveState)
    assert (state.recent_limit, state.applied_limit) == (2, 10)
    assert open_state("memory://", recent=5, applied=7).applied_limit == 7
    assert open_state("memory://", recent_limit=5).recent_limit == 5
    assert open_state("memory://?recent=2", recent=5).recent_limit == 2  # the URL wins
    assert open_state("memory://").recent_limit == 50


@pytest.mark.parametrize(
    ("url", "options", "problem"),
    [
        ("postgres://localhost/1", {}, "unknown scheme"),
        ("state.db", {}, "unknown scheme"),
        ("memory://?recent=many", {}, "positive integer"),
        ("memory://?recent=0", {}, "positive integer"),
        ("memory://?applied=-1", {}, "positive integer"),
        ("memory://?recent=1&recent=2", {}, "given twice"),
        ("memory://?prefix=x", {}, "unknown option"),
        ("memory://?colour=red", {}, "unknown option.*colour.*recent, applied"),
        ("memory://", {"colour": "red"}, "unknown option"),
        ("memory://", {"recent_limit": "3"}, "positive integer"),
        ("memory://", {"recent": 3, "recent_limit": 3}, "given twice"),
        ("memory://", {"prefix": "p:"}, "unknown option"),
        ("memory://somewhere", {}, "no host"),
        ("redis://localhost:6379/0?colour=red", {}, "unknown option"),
        ("redis://localhost:6379/0?decode_responses=true", {}, "unknown option"),
        ("redis://localhost:6379/0", {"pool": 3}, "unknown option"),
        ("redis://localhost:6379/0?prefix=", {}, "prefix"),
        ("redis://localhost:6379/zero", {}, "database"),
        ("redis://localhost:port/0", {}, "port"),
        ("redis://localhost:99999/0", {}, "port"),
        ("redis:///0", {}, "no host"),
        ("redis://[::1", {}, "IPv6"),
        ("redis://localhost:6379/0?recent=0", {}, "recent must be a positive integer"),
        ("redis://localhost:6379/0?socket_timeout=1&socket_timeout=2", {}, "given twice"),
        ("redis://localhost:6379/0?socket_timeout=soon", {}, "socket_timeout"),
        ("redis://localhost:6379/0?db=3", {}, "unknown option.*db"),
        ("redis://localhost:6379/0?protocol=3", {}, "unknown option.*protocol"),
        ("redis://localhost:6379/0", {"socket_timeout": 5}, "unknown option.*socket_timeout"),
    ],
)
def test_open_state_rejects_bad_urls(url: str, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        open_state(url, **options)
    message = str(caught.value)
    assert message.startswith(f"live state URL {url!r}: ")
    assert "supported: memory:// (options recent, applied) and redis://" in message


def test_open_redis_parses_options_without_connecting() -> None:
    state = open_state("redis://127.0.0.1:1/3?prefix=p:&recent=4&applied=9&socket_timeout=2")
    assert isinstance(state, RedisLiveState)
    assert (state.prefix, state.recent_limit, state.applied_limit) == ("p:", 4, 9)
    kwargs = state.client.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == (1, 3, 2.0)
    assert open_state("redis://127.0.0.1:1/3").prefix == "shoprec:"
    state.close()


@pytest.mark.parametrize(
    ("url", "options", "prefix"),
    [
        ("redis://127.0.0.1:1/3", {"prefix": "k:"}, "k:"),
        ("redis://127.0.0.1:1/3?prefix=u:", {"prefix": "k:"}, "u:"),  # the URL wins
        ("redis://127.0.0.1:1/3?prefix=%20u:%20", {}, "u:"),
        ("rediss://127.0.0.1:1/3?prefix=s:", {}, "s:"),
    ],
)
def test_open_redis_takes_the_prefix_from_the_url_or_the_options(
    url: str, options: dict[str, Any], prefix: str
) -> None:
    state = open_state(url, **options)
    assert isinstance(state, RedisLiveState)
    assert state.prefix == prefix
    secure = issubclass(state.client.connection_pool.connection_class, redis.SSLConnection)
    assert secure == url.startswith("rediss://")
    state.close()


# -- Redis only ---------------------------------------------------------------------------------
def test_redis_replicas_share_one_state(redis_state: OpenState) -> None:
    worker, replica = redis_state(), redis_state()
    assert worker.apply(event("e1", kind="purchase"))
    assert not replica.apply(event("e1", kind="purchase"))
    assert replica.recent("u1") == [("i1", "purchase")]
    worker.set_vector("u1", "content", np.ones(4))
    np.testing.assert_array_equal(replica.vector("u1", "content"), np.ones(4, np.float32))


def test_redis_concurrent_replicas_count_each_event_once(redis_state: OpenState) -> None:
    replicas = [redis_state() for _ in range(3)]
    events = [event(f"e{n}", user=f"u{n % 5}") for n in range(150)]
    new = [0] * len(replicas)

    def work(index: int) -> None:
        mine = events[:]
        random.Random(index).shuffle(mine)
        new[index] = replicas[index].apply_many(mine)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(replicas))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(new) == 150
    assert replicas[0].applied_count() == 150
    assert sum(replicas[1].user_counters(f"u{n}")["view"] for n in range(5)) == 150


def test_redis_clear_deletes_only_its_prefix(redis_url: str, redis_state: OpenState) -> None:
    redis_url = redis_url.split("?", 1)[0]
    state = redis_state()
    neighbour_prefix = state.prefix.rstrip(":") + "-other:"  # starts alike, another prefix
    neighbour = open_state(with_query(redis_url, prefix=neighbour_prefix))
    try:
        neighbour.apply(event("e1"))
        state.apply(event("e1"))
        state.clear()
        assert state.applied_count() == 0
        assert neighbour.applied_count() == 1
        assert neighbour.recent("u1") == [("i1", "view")]
    finally:
        neighbour.close()
        delete_keys(redis_url, neighbour_prefix)


def test_redis_clear_treats_glob_characters_literally(redis_url: str) -> None:
    redis_url = redis_url.split("?", 1)[0]
    base = f"shoprec-test-glob-{uuid.uuid4().hex}"
    star = open_state(with_query(redis_url, prefix=f"{base}*:"))
    other = open_state(with_query(redis_url, prefix=f"{base}x:"))
    try:
        star.apply(event("e1"))
        other.apply(event("e1"))
        star.clear()
        assert star.applied_count() == 0
        assert other.applied_count() == 1
    finally:
        star.close()
        other.close()
        delete_keys(redis_url, base)


def test_redis_apply_is_all_or_nothing(redis_state: OpenState) -> None:
    state = redis_state()
    assert isinstance(state, RedisLiveState)
    state.client.set(state.prefix + "item:i1", "not a hash")
    with pytest.raises(StateError, match="WRONGTYPE") as raised:
        state.apply(event("e1"))
    assert not isinstance(raised.value, StateUnavailableError)
    assert not state.was_applied("e1")
    assert state.applied_count() == 0
    assert state.user_counters("u1") == {}
    assert state.recent("u1") == []
    state.client.delete(state.prefix + "item:i1")
    assert state.apply(event("e1"))


def test_redis_recent_items_keep_tabs_and_quotes(redis_state: OpenState) -> None:
    state = redis_state()
    state.apply(event("e1", item='sku\t"7"', kind="add_to_cart"))
    assert state.recent("u1") == [('sku\t"7"', "add_to_cart")]


def test_redis_apply_many_reloads_a_missing_script(redis_state: OpenState) -> None:
    state = redis_state()
    assert isinstance(state, RedisLiveState)
    state.apply(event("e0"))
    state._apply_script.sha = "0" * 40  # as if Redis restarted without its scripts
    assert state.apply_many([event("e0"), event("e1"), event("e2")]) == 2
    assert state.applied_count() == 3
    assert state.apply(event("e3"))


def test_batch_reads_and_writes_match_the_single_ones(open_live: OpenState) -> None:
    state = open_live()
    state.apply_each([event("a", user="u1", item="i1"), event("b", user="u2", item="i2")])
    assert state.recent_many(["u1", "u2", "nobody"]) == {
        "u1": [("i1", "view")],
        "u2": [("i2", "view")],
        "nobody": [],
    }
    vectors = [("u1", "als", np.arange(3, dtype=np.float32)), ("u2", "als", np.ones(2))]
    state.set_vectors(vectors)
    for user, name, vector in vectors:
        stored = state.vector(user, name)
        assert stored is not None
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, vector)


@pytest.mark.parametrize(
    ("url", "problem"),
    [("redis://:s3cret@127.0.0.1:6379/0?nope=1", "nope"), ("memory://me:s3cret@here", "no host")],
)
def test_a_bad_state_url_never_shows_its_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        open_state(url)
    assert "s3cret" not in str(raised.value)
    assert problem in str(raised.value)


def test_live_user_reads_only_vectors_folded_in_from_the_current_history(
    open_live: OpenState,
) -> None:
    state = open_live()
    assert state.live_user("u1", ["als", "content"]) == ([], {})
    state.apply_each([event("a", item="i1"), event("b", item="i2", kind="purchase")])
    history = state.recent("u1")
    als, content = np.arange(4, dtype=np.float64), np.ones((2, 3))
    state.set_vectors([("u1", "als", als), ("u1", "content", content)], {"u1": history})

    seen, vectors = state.live_user("u1", ["als", "content", "missing"])
    assert seen == [("i1", "view"), ("i2", "purchase")]
    assert sorted(vectors) == ["als", "content"]
    assert vectors["als"].dtype == np.float32
    np.testing.assert_array_equal(vectors["als"], als)
    np.testing.assert_array_equal(vectors["content"], content)

    # an event applied after the fold-in: the vectors miss it, so they are left out
    state.apply(event("c", item="i3"))
    seen, vectors = state.live_user("u1", ["als", "content"])
    assert seen[-1] == ("i3", "view")
    assert vectors == {}
    # until the worker folds the new history in
    state.set_vectors([("u1", "als", als + 1)], {"u1": state.recent("u1")})
    _, vectors = state.live_user("u1", ["als", "content"])
    assert list(vectors) == ["als"]
    np.testing.assert_array_equal(vectors["als"], als + 1)


def test_live_user_leaves_out_vectors_stored_without_their_history(
    open_live: OpenState,
) -> None:
    state = open_live()
    state.apply(event("a", item="i1"))
    state.set_vectors([("u1", "als", np.ones(3))], {"u1": state.recent("u1")})
    state.set_vector("u1", "als", np.zeros(3))  # no basis: cannot say what it folds in
    assert state.live_user("u1", ["als"]) == ([("i1", "view")], {})
    np.testing.assert_array_equal(state.vector("u1", "als"), np.zeros(3))  # still readable


def test_history_basis_tells_histories_apart() -> None:
    one = [("i1", "view"), ("i2", "purchase")]
    assert history_basis(one) == history_basis(list(one))
    assert history_basis(one) != history_basis(one[::-1])
    assert history_basis(one) != history_basis([("i1", "view"), ("i2", "view")])
    assert history_basis([("a", "b,c")]) != history_basis([("a,b", "c")])
    assert history_basis([]) != history_basis([("", "")])


def test_an_unreachable_redis_is_a_state_error_that_says_so() -> None:
    # nothing listens on port 1; redis-py connects at the first call
    state = open_state("redis://127.0.0.1:1/0?prefix=t:&socket_connect_timeout=0.5")
    for read in (
        lambda: state.recent("u1"),
        lambda: state.live_user("u1", ["als"]),
        lambda: state.apply(event("e1")),
    ):
        with pytest.raises(
            StateUnavailableError,
            match=r"live state redis://127.0.0.1:1/0 \(prefix 't:'\) is unreachable",
        ):
            read()
    state.close()
