"""The ranker's training examples, cut to fit the shop's data.

Three questions are answered from the data at fit time, each answer with its reason:

* **What is a positive?** (:func:`choose_labels`) Purchases where the shop has them; otherwise
  the event types it weighs most (ratings, reviews, add-to-cart …). Ratings below a threshold
  are not positives.
* **How are examples cut?** (:func:`choose_scheme`) A global time window when the end of the
  log labels enough shoppers; each user's last positive when the order is all the data has
  (timestamps evenly spaced per user) or the window labels too few; a random share of each
  user's positives when the labels are ratings whose time says nothing (a user's whole history
  entered in one sitting).
* **Which users?** (:func:`per_user_holdout`, :func:`assign_roles`) A sample of users, split into
  those the ranker learns from, those that stop its training (early stopping) and those the
  validation gate scores every candidate model on. A user's labels are never in the history
  that the generators and features of the same block see.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from shoprec.config import EventWeights
from shoprec.data.schema import EARLIEST_TS, EVENT_TYPE, ITEM_ID, TS, USER_ID, VALUE

__all__ = [
    "LabelChoice",
    "Roles",
    "Scheme",
    "SchemeChoice",
    "assign_roles",
    "choose_labels",
    "choose_scheme",
    "data_start",
    "per_user_holdout",
    "positive_events",
]

Scheme = Literal["time_window", "last_per_user", "random_per_user"]

# A global window must label this share of the users who have positives at all, and at least
# this many users with history (half of them in a very small shop), to be chosen by 'auto'.
MIN_WINDOW_USERS = 50
MIN_WINDOW_SHARE = 0.2
# Purchases are the label when at least this many users made one.
MIN_PURCHASE_USERS = 20
# An event this many interquartile ranges of the events' times before their first quartile
# lies far outside the data (a zeroed or misread date).
FAR_OUT = 10.0


def data_start(events: pl.DataFrame) -> tuple[datetime, str | None]:
    """Where the data's time span starts, for the label windows; and a warning when a few
    events lie far before it.

    One event from year 1 would stretch the span to two millennia and the windows (a share of
    the span) with it, until the last window labels no one and the ranker is left out. An event
    before :data:`~shoprec.data.schema.EARLIEST_TS`, or :data:`FAR_OUT` interquartile ranges
    before the first quartile, stays in the history, but the span starts after it.
    """
    times = events.get_column(TS).drop_nulls()
    first = times.min()
    assert isinstance(first, datetime)
    micros = times.dt.epoch("us").to_numpy()
    q1, q3 = np.percentile(micros, [25, 75])
    far = micros < int(EARLIEST_TS.timestamp() * 1_000_000)
    if q3 > q1:
        far |= micros < q1 - FAR_OUT * (q3 - q1)
    if not far.any() or far.all():
        return first, None
    start = times.filter(pl.Series(~far)).min()
    assert isinstance(start, datetime)
    return start, (
        f"{int(far.sum()):,} event(s) lie far before the rest of the data (the earliest at "
        f"{first.date().isoformat()}, the rest from {start.date().isoformat()}), a zeroed or "
        "misread date: the label windows span the data from the rest's start; remove them "
        "from the lake"
    )


@dataclass(frozen=True)
class LabelChoice:
    """The events that count as positives: their types and, for rated ones, the lowest
    value that counts."""

    event_types: list[str]
    min_value: float | None
    reason: str
    rated: list[str] = field(default_factory=list)  # the types min_value applies to

    def to_dict(self) -> dict[str, Any]:
        return {"event_types": self.event_types, "min_value": self.min_value, "why": self.reason}


@dataclass(frozen=True)
class SchemeChoice:
    scheme: Scheme
    reason: str
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "why": self.reason, **self.stats}


def _identified(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(pl.col(USER_ID).is_not_null() & pl.col(ITEM_ID).is_not_null())


def choose_labels(
    events: pl.DataFrame,
    configured: list[str] | None,
    weights: EventWeights,
    min_rating: float | Literal["auto"] | None,
) -> LabelChoice:
    """The positive events of ``events``: ``configured`` types when given, else purchases when
    enough users made one, else the present event types with the highest configured weight.

    ``min_rating`` applies to value-weighted types (ratings): ``"auto"`` is the middle of the
    values seen (3 on a 1–5 scale), ``None`` counts every rating.
    """
    known = _identified(events)
    present = known.group_by(EVENT_TYPE).agg(pl.col(USER_ID).n_unique().alias("users"))
    users_of = dict(present.iter_rows())
    if configured:
        types, reason = list(configured), "configured"
    elif users_of.get("purchase", 0) >= MIN_PURCHASE_USERS:
        types, reason = ["purchase"], f"{users_of['purchase']:,} users made purchases"
    else:
        weighted = {t: weights.weights.get(str(t), 0.0) for t in users_of if t is not None}
        best = max(weighted.values(), default=0.0)
        types = sorted(t for t, w in weighted.items() if w == best and w > 0)
        if not types:
            return LabelChoice([], None, "no event type has a positive weight")
        reason = (
            f"no purchases; the strongest event type{'s' if len(types) > 1 else ''} by weight "
            f"({best:g})"
        )
    rated = [t for t in types if t in weights.value_weighted]
    threshold: float | None = None
    if rated and min_rating is not None:
        if min_rating == "auto":
            values = known.filter(pl.col(EVENT_TYPE).is_in(rated)).get_column(VALUE).drop_nulls()
            if values.len() and values.max() != values.min():
                low, high = float(values.min()), float(values.max())  # type: ignore[arg-type]
                threshold = (low + high) / 2.0
        else:
            threshold = float(min_rating)
        if threshold is not None:
            reason += f"; {', '.join(rated)} below {threshold:g} are not positives"
    return LabelChoice(types, threshold, reason, rated)


def positive_events(events: pl.DataFrame, labels: LabelChoice) -> pl.DataFrame:
    """The events of ``events`` that count as positives (with a user and an item)."""
    chosen = _identified(events).filter(pl.col(EVENT_TYPE).is_in(labels.event_types))
    if labels.min_value is not None and labels.rated:
        chosen = chosen.filter(
            ~pl.col(EVENT_TYPE).is_in(labels.rated)
            | (pl.col(VALUE).fill_null(0) >= labels.min_value)
        )
    return chosen


def choose_scheme(
    events: pl.DataFrame,
    positives: pl.DataFrame,
    labels: LabelChoice,
    weights: EventWeights,
    window: timedelta,
    configured: Scheme | Literal["auto"] = "auto",
) -> SchemeChoice:
    """How to cut training examples from ``events`` (see the module docstring)."""
    end = events.get_column(TS).max()
    assert isinstance(end, datetime)
    cut = end - window
    before = _identified(events).filter(pl.col(TS) < cut).select(USER_ID).unique()
    in_window = positives.filter(pl.col(TS) >= cut).select(USER_ID).unique()
    window_users = in_window.join(before, on=USER_ID, how="semi").height
    positive_users = positives.select(USER_ID).n_unique()
    share = window_users / positive_users if positive_users else 0.0
    stats: dict[str, Any] = {
        "window_users": window_users,
        "window_share": round(share, 4),
        "positive_users": positive_users,
    }
    if configured != "auto":
        return SchemeChoice(configured, "configured", stats)
    if _evenly_spaced(events):
        return SchemeChoice(
            "last_per_user",
            "timestamps are evenly spaced per user (order only): each user's last positive",
            stats,
        )
    enough = min(MIN_WINDOW_USERS, positive_users // 2)
    if window_users >= enough and share >= MIN_WINDOW_SHARE:
        return SchemeChoice(
            "time_window",
            f"the last window labels {window_users:,} users with history ({share:.0%} of users "
            "with positives)",
            stats,
        )
    few = f"the last window labels only {window_users:,} users with history ({share:.0%})"
    if all(t in weights.value_weighted for t in labels.event_types):
        return SchemeChoice(
            "random_per_user",
            f"{few}, and the labels are ratings, whose time is when they were entered: a "
            "random share of each user's positives",
            stats,
        )
    return SchemeChoice("last_per_user", f"{few}: each user's last positive", stats)


def _evenly_spaced(events: pl.DataFrame) -> bool:
    """Whether every user's consecutive events are the same time apart (synthetic timestamps
    that keep only the order, as the ``amazon-seq`` adapter writes)."""
    gaps = (
        _identified(events)
        .select(USER_ID, TS)
        .sort(USER_ID, TS)
        .select(pl.col(TS).diff().over(USER_ID).alias("gap"))
        .get_column("gap")
        .drop_nulls()
    )
    return gaps.len() > 0 and gaps.n_unique() == 1 and gaps.min() != timedelta(0)


def per_user_holdout(
    events: pl.DataFrame,
    labels: LabelChoice,
    scheme: Literal["last_per_user", "random_per_user"],
    *,
    max_users: int,
    fraction: float,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(history, labels)`` for a sample of at most ``max_users`` users.

    ``last_per_user``: a user's last positives (those at the time of their last one: the
    last basket) are the labels and only their events before that time stay in the history.
    ``random_per_user``: a random ``fraction`` of a user's positive items (at least one) are
    labels and every event of those user–item pairs leaves the history. A user needs history
    left besides the labels to be sampled. Other users keep all their events.
    """
    positives = positive_events(events, labels)
    if scheme == "last_per_user":
        last = positives.group_by(USER_ID).agg(pl.col(TS).max().alias("__cut"))
        earlier = (
            _identified(events)
            .join(last, on=USER_ID)
            .filter(pl.col(TS) < pl.col("__cut"))
            .select(USER_ID)
            .unique()
        )
        sample = _sample(earlier, max_users, seed).join(last, on=USER_ID)
        held = (
            positives.join(sample, on=USER_ID)
            .filter(pl.col(TS) == pl.col("__cut"))
            .select(USER_ID, ITEM_ID)
            .unique()
        )
        history = (
            events.join(sample, on=USER_ID, how="left")
            .filter(pl.col("__cut").is_null() | (pl.col(TS) < pl.col("__cut")))
            .drop("__cut")
        )
        return history, held
    pairs = positives.select(USER_ID, ITEM_ID).unique().sort(USER_ID, ITEM_ID)
    per_user = pairs.group_by(USER_ID).len().filter(pl.col("len") >= 2)
    sample = _sample(per_user.select(USER_ID), max_users, seed)
    pairs = pairs.join(sample, on=USER_ID, how="semi")
    rng = np.random.default_rng(seed)
    drawn = pairs.with_columns(pl.Series("__draw", rng.random(pairs.height)))
    held = drawn.filter(
        pl.col("__draw").rank("ordinal").over(USER_ID)
        <= (pl.len().over(USER_ID) * fraction).round(0).clip(1, None)
    ).select(USER_ID, ITEM_ID)
    return events.join(held, on=[USER_ID, ITEM_ID], how="anti"), held


def _sample(users: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    users = users.sort(USER_ID)
    return users.sample(n, seed=seed) if users.height > n else users


@dataclass(frozen=True)
class Roles:
    train: list[str]
    stop: list[str]
    gate: list[str]


def _draw(user: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_roles(users: list[str], shares: tuple[float, float], seed: int) -> Roles:
    """Split ``users`` by a stable hash: ``shares`` are the early-stopping and gate shares, the
    rest trains. Each role gets at least one user when there are three or more."""
    stop_share, gate_share = shares
    draws = sorted((_draw(u, seed), u) for u in users)
    ordered = [u for _, u in draws]
    n = len(ordered)
    n_gate = max(1, round(n * gate_share)) if n >= 3 and gate_share > 0 else 0
    n_stop = max(1, round(n * stop_share)) if n >= 3 and stop_share > 0 else 0
    gate = ordered[:n_gate]
    stop = ordered[n_gate : n_gate + n_stop]
    train = ordered[n_gate + n_stop :]
    return Roles(sorted(train), sorted(stop), sorted(gate))
