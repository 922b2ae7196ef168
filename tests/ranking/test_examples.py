"""Training examples cut to the data's shape: labels, scheme, holdouts and roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from shoprec.config import EventWeights
from shoprec.ranking.examples import (
    assign_roles,
    choose_labels,
    choose_scheme,
    per_user_holdout,
    positive_events,
)

START = datetime(2024, 1, 1, tzinfo=UTC)


def _events(rows: list[tuple[str, str, str, datetime, float | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "event_type": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "value": pl.Float64,
        },
        orient="row",
    )


def _shop(types: list[str], users: int = 30) -> pl.DataFrame:
    rows = []
    for u in range(users):
        for n, kind in enumerate(types):
            rows.append((f"u{u}", f"i{(u + n) % 7}", kind, START + timedelta(hours=u + n), 1.0))
    return _events(rows)


def test_purchases_are_the_labels_where_the_shop_has_them() -> None:
    chosen = choose_labels(_shop(["view", "add_to_cart", "purchase"]), None, EventWeights(), "auto")
    assert chosen.event_types == ["purchase"]
    assert "30 users made purchases" in chosen.reason


def test_without_purchases_the_strongest_event_type_labels() -> None:
    chosen = choose_labels(_shop(["view", "add_to_cart"]), None, EventWeights(), "auto")
    assert chosen.event_types == ["add_to_cart"]
    assert "no purchases" in chosen.reason
    views = choose_labels(_shop(["view"]), None, EventWeights(), "auto")
    assert views.event_types == ["view"]


def test_configured_labels_win() -> None:
    chosen = choose_labels(_shop(["view", "purchase"]), ["view"], EventWeights(), "auto")
    assert (chosen.event_types, chosen.reason) == (["view"], "configured")


def test_low_ratings_are_not_positives() -> None:
    rows = [
        ("u1", "a", "rating", START, 5.0),
        ("u1", "b", "rating", START, 1.0),
        ("u2", "a", "rating", START, 3.0),
        ("u2", "c", "rating", START, 2.0),
    ]
    events = _events(rows)
    chosen = choose_labels(events, None, EventWeights(), "auto")
    assert (chosen.event_types, chosen.min_value) == (["rating"], 3.0)  # the middle of 1..5
    kept = positive_events(events, chosen).select("user_id", "item_id").rows()
    assert sorted(kept) == [("u1", "a"), ("u2", "a")]
    every = choose_labels(events, None, EventWeights(), None)
    assert every.min_value is None
    assert positive_events(events, every).height == 4
    fixed = choose_labels(events, None, EventWeights(), 2.0)
    assert positive_events(fixed_events := events, fixed).height == 3
    assert fixed_events.height == 4


def _scheme(events: pl.DataFrame, weights: EventWeights | None = None) -> str:
    weights = weights or EventWeights()
    labels = choose_labels(events, None, weights, "auto")
    positives = positive_events(events, labels)
    span = events["ts"].max() - events["ts"].min()  # type: ignore[operator]
    return choose_scheme(events, positives, labels, weights, span * 0.2).scheme


def test_evenly_spaced_sequences_hold_out_each_users_last_item() -> None:
    rows = [
        (f"u{u}", f"i{(u * 3 + k) % 11}", "review", START + timedelta(seconds=k), None)
        for u in range(40)
        for k in range(5 + u % 4)
    ]
    assert _scheme(_events(rows)) == "last_per_user"


def test_ratings_entered_in_one_sitting_hold_out_at_random() -> None:
    # each user rates everything within minutes, the users months apart: the end of the log
    # labels only the last few users
    rows = [
        (f"u{u}", f"i{(u + k) % 13}", "rating", START + timedelta(days=u, minutes=k * k), 4.0)
        for u in range(60)
        for k in range(6)
    ]
    assert _scheme(_events(rows)) == "random_per_user"
    views = [(u, i, "view", ts, v) for u, i, _, ts, v in rows]
    assert _scheme(_events(views)) == "last_per_user"  # order means something for views


def test_a_log_whose_end_labels_many_users_uses_time_windows() -> None:
    rows = [
        (f"u{u}", f"i{(u + d) % 9}", "purchase", START + timedelta(days=d, hours=u + d % 5), 1.0)
        for u in range(60)
        for d in range(0, 100, 7)
    ]
    assert _scheme(_events(rows)) == "time_window"


def test_last_per_user_holds_out_the_last_basket_and_everything_after() -> None:
    t = [START + timedelta(days=d) for d in range(4)]
    rows = [
        ("u1", "a", "purchase", t[0], 1.0),
        ("u1", "b", "view", t[1], 1.0),
        ("u1", "b", "purchase", t[2], 1.0),  # the last basket: b and c
        ("u1", "c", "purchase", t[2], 1.0),
        ("u1", "d", "view", t[3], 1.0),  # after the label: not history
        ("u2", "a", "purchase", t[0], 1.0),  # no history before their last: not sampled
        ("u3", "a", "view", t[0], 1.0),
        ("u3", "c", "purchase", t[1], 1.0),
    ]
    events = _events(rows)
    labels = choose_labels(events, None, EventWeights(), "auto")
    history, held = per_user_holdout(
        events, labels, "last_per_user", max_users=10, fraction=0.2, seed=0
    )
    assert sorted(held.rows()) == [("u1", "b"), ("u1", "c"), ("u3", "c")]
    kept = sorted(history.select("user_id", "item_id", "event_type").rows())
    assert kept == [
        ("u1", "a", "purchase"),
        ("u1", "b", "view"),
        ("u2", "a", "purchase"),
        ("u3", "a", "view"),
    ]


def test_random_per_user_removes_every_event_of_a_held_out_pair() -> None:
    rows = [
        (f"u{u}", f"i{i}", kind, START + timedelta(hours=i), 4.0)
        for u in range(20)
        for i in range(10)
        for kind in ("view", "rating")
    ]
    events = _events(rows)
    labels = choose_labels(events, ["rating"], EventWeights(), None)
    history, held = per_user_holdout(
        events, labels, "random_per_user", max_users=15, fraction=0.2, seed=3
    )
    per_user = held.group_by("user_id").len()
    assert per_user.height == 15  # the sample
    assert set(per_user["len"].to_list()) == {2}  # 20 % of 10 items
    leaked = history.join(held, on=["user_id", "item_id"], how="semi")
    assert leaked.height == 0
    assert history.height == events.height - 2 * held.height
    again = per_user_holdout(events, labels, "random_per_user", max_users=15, fraction=0.2, seed=3)
    assert again[1].sort("user_id", "item_id").equals(held.sort("user_id", "item_id"))


def test_roles_are_disjoint_stable_and_cover_the_users() -> None:
    users = [f"u{i}" for i in range(100)]
    roles = assign_roles(users, (0.15, 0.25), seed=0)
    assert (len(roles.train), len(roles.stop), len(roles.gate)) == (60, 15, 25)
    assert sorted(roles.train + roles.stop + roles.gate) == sorted(users)
    assert assign_roles(list(reversed(users)), (0.15, 0.25), seed=0) == roles
    assert assign_roles(users, (0.15, 0.25), seed=1) != roles
    tiny = assign_roles(["a", "b"], (0.15, 0.25), seed=0)
    assert (tiny.train, tiny.stop, tiny.gate) == (["a", "b"], [], [])


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_a_window_can_be_all_gate_or_all_training(share: float) -> None:
    users = [f"u{i}" for i in range(10)]
    roles = assign_roles(users, (0.0, share), seed=0)
    assert len(roles.gate) == 10 * share
    assert len(roles.train) == 10 - 10 * share
