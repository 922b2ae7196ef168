"""Train/test splits of canonical events, and the relevant test items they define.

Every splitter returns a :class:`Split`: the training events (all event types, as a model
would see them) and the *truth*, the ``(user_id, item_id)`` pairs that count as relevant in the
test period. Only users with training history are tested, so every model is judged on users it
could know; the truth of a time split keeps repeat purchases (an item bought before and again
later is relevant), which is what buy-again models are for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from shoprec.data.schema import EVENT_TYPE, ITEM_ID, TS, USER_ID, VALUE
from shoprec.exceptions import ConfigError, DataError, describe_validation_error

__all__ = [
    "AnySplitConfig",
    "LeaveLastOutSplit",
    "RandomSplit",
    "Split",
    "TimeSplit",
    "make_split",
    "parse_split_config",
]


@dataclass(frozen=True)
class Split:
    """Training events and the relevant test pairs (``user_id, item_id, relevance``)."""

    train: pl.DataFrame
    truth: pl.DataFrame
    description: str

    @property
    def test_users(self) -> list[str]:
        return self.truth.get_column(USER_ID).unique(maintain_order=True).to_list()


class _SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    test_event_types: list[str] = Field(
        default_factory=lambda: ["purchase"],
        description="events that make an item relevant in the test period",
    )
    min_value: float | None = Field(
        default=None,
        description="relevant only when the event's value is at least this (e.g. a rating of 4)",
    )

    def _relevant(self, events: pl.DataFrame) -> pl.DataFrame:
        chosen = events.filter(pl.col(EVENT_TYPE).is_in(self.test_event_types))
        chosen = chosen.filter(pl.col(ITEM_ID).is_not_null() & pl.col(USER_ID).is_not_null())
        if self.min_value is not None:
            chosen = chosen.filter(pl.col(VALUE) >= self.min_value)
        return chosen


def _finish(train: pl.DataFrame, test: pl.DataFrame, description: str) -> Split:
    if train.height == 0:
        raise DataError(f"{description}: the training set is empty")
    known = train.filter(pl.col(USER_ID).is_not_null()).select(USER_ID).unique()
    truth = (
        test.join(known, on=USER_ID, how="semi")
        .select(USER_ID, ITEM_ID)
        .unique(maintain_order=True)
        .with_columns(pl.lit(1.0).alias("relevance"))
    )
    if truth.height == 0:
        raise DataError(
            f"{description}: the split leaves no test users (no user with training history has "
            "a relevant event in the test part)"
        )
    return Split(train, truth, description)


class TimeSplit(_SplitConfig):
    """Everything before a cutoff trains; relevant events from the cutoff on are the test.

    The cutoff is a date, or the point ``train_ratio`` of the way through the time range.
    """

    kind: Literal["time"] = "time"
    cutoff: datetime | None = None
    train_ratio: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_cutoff(self) -> TimeSplit:
        if (self.cutoff is None) == (self.train_ratio is None):
            raise ValueError("give exactly one of cutoff or train_ratio")
        return self

    def split(self, events: pl.DataFrame) -> Split:
        if self.cutoff is not None:
            cutoff = self.cutoff
            if cutoff.tzinfo is None:
                cutoff = cutoff.replace(tzinfo=UTC)
        else:
            first, last = events.get_column(TS).min(), events.get_column(TS).max()
            if not isinstance(first, datetime) or not isinstance(last, datetime):
                raise DataError("time split: there are no events")
            cutoff = first + (last - first) * (self.train_ratio or 0.0)
        train = events.filter(pl.col(TS) < cutoff)
        test = self._relevant(events.filter(pl.col(TS) >= cutoff))
        return _finish(train, test, f"time split at {cutoff:%Y-%m-%d %H:%M}")


class LeaveLastOutSplit(_SplitConfig):
    """Each user's last relevant item is the test; their events before it train."""

    kind: Literal["leave_last_out"] = "leave_last_out"

    def split(self, events: pl.DataFrame) -> Split:
        ordered = events.with_row_index("__order")
        relevant = self._relevant(ordered)
        last = (
            relevant.sort(TS, "__order")
            .group_by(USER_ID)
            .agg(pl.col(ITEM_ID).last(), pl.col(TS).last().alias("__cut"), pl.col("__order").last())
        )
        train = (
            ordered.join(
                last.select(USER_ID, "__cut", pl.col("__order").alias("__last")),
                on=USER_ID,
                how="left",
            )
            .filter(
                pl.col("__cut").is_null()
                | (pl.col(TS) < pl.col("__cut"))
                | ((pl.col(TS) == pl.col("__cut")) & (pl.col("__order") < pl.col("__last")))
            )
            .drop("__cut", "__last", "__order")
        )
        return _finish(train, last.select(USER_ID, ITEM_ID), "leave-last-out")


class RandomSplit(_SplitConfig):
    """A random share of each user's relevant items is the test; all their other events train.

    Every event of a test ``(user, item)`` pair is removed from training, so no view or rating
    of a test item leaks into it.
    """

    kind: Literal["random"] = "random"
    test_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 0

    def split(self, events: pl.DataFrame) -> Split:
        pairs = self._relevant(events).select(USER_ID, ITEM_ID).unique().sort(USER_ID, ITEM_ID)
        rng = np.random.default_rng(self.seed)
        pairs = pairs.with_columns(pl.Series("__draw", rng.random(pairs.height)))
        # each user keeps round(fraction * n) of their items for the test (at least one of two)
        ranked = pairs.with_columns(
            pl.col("__draw").rank("ordinal").over(USER_ID).alias("__rank"),
            pl.len().over(USER_ID).alias("__n"),
        )
        test = ranked.filter(
            (pl.col("__n") >= 2)
            & (pl.col("__rank") <= (pl.col("__n") * self.test_fraction).round(0).clip(1, None))
        ).select(USER_ID, ITEM_ID)
        train = events.join(test, on=[USER_ID, ITEM_ID], how="anti")
        return _finish(
            train, test, f"random {1 - self.test_fraction:.0%}/{self.test_fraction:.0%} per user"
        )


AnySplitConfig = Annotated[TimeSplit | LeaveLastOutSplit | RandomSplit, Field(discriminator="kind")]


_SPLIT_ADAPTER: TypeAdapter[AnySplitConfig] = TypeAdapter(AnySplitConfig)


def parse_split_config(data: dict[str, Any] | AnySplitConfig) -> AnySplitConfig:
    """A splitter config from a mapping with ``kind`` (time, leave_last_out or random)."""
    if isinstance(data, TimeSplit | LeaveLastOutSplit | RandomSplit):
        return data
    try:
        return _SPLIT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, skip=1, root="kind")) from None


def make_split(config: AnySplitConfig, events: pl.DataFrame) -> Split:
    """Split canonical events as ``config`` says."""
    if events.height == 0:
        raise DataError("cannot split: there are no events")
    try:
        return config.split(events)
    except ValueError as exc:
        raise ConfigError(f"split: {exc}") from None
