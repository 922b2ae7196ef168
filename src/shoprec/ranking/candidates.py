"""The candidates of the two-stage model as a table, for training its ranker: every
generator's top items per user, their scores and ranks, and the derived columns (how many
generators proposed a candidate, their rank fusion, the shopper's taste for it) that the
serving path computes from arrays (:class:`~shoprec.ranking.scorer.CandidateScorer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from shoprec.data.schema import ITEM_ID, USER_ID
from shoprec.models.base import Recommender

__all__ = ["TASTE_PRIOR", "candidate_expressions", "candidate_frame", "taste_expressions"]

TASTE_PRIOR = 2.0  # events' worth of the shop's category mix in a shopper's affinity


def candidate_frame(
    generators: dict[str, Recommender[Any]],
    user_ids: list[str],
    per_generator: int | Mapping[str, int],
    history: pl.DataFrame | None = None,
    *,
    exclude_seen: bool = False,
) -> pl.DataFrame:
    """The union of every generator's top items: one row per (user, item), each generator's
    score and rank as columns (null where it did not propose the item). ``per_generator`` is
    one count for all, or a count per generator name; with ``exclude_seen`` each generator
    proposes only items the user has not interacted with."""
    merged: pl.DataFrame | None = None
    for name, model in generators.items():
        count = per_generator if isinstance(per_generator, int) else per_generator[name]
        recs = model.recommend(
            user_ids, k=count, exclude_seen=exclude_seen, history=history, explain=False
        )
        part = recs.select(
            USER_ID,
            ITEM_ID,
            pl.col("score").alias(f"{name}_score"),
            pl.col("rank").cast(pl.Float64).alias(f"{name}_rank"),
        )
        merged = (
            part
            if merged is None
            else merged.join(part, on=[USER_ID, ITEM_ID], how="full", coalesce=True)
        )
    assert merged is not None
    return merged


def taste_expressions(columns: Sequence[str]) -> list[pl.Expr]:
    """Derived taste features (see :func:`shoprec.features.build._taste_features`): the
    shopper's share of the candidate's price band, the gap between the candidate's price
    percentile and the shopper's, and ``taste_score``, an estimate of how likely the shopper
    picks this item: smoothed category share × the item's share of its category × band share."""
    have = set(columns)
    out: list[pl.Expr] = []
    band_share = None
    if {"item_band", "user_band0_share"} <= have:
        band_share = (
            pl.when(pl.col("item_band") == 0)
            .then(pl.col("user_band0_share"))
            .when(pl.col("item_band") == 1)
            .then(pl.col("user_band1_share"))
            .when(pl.col("item_band") == 2)
            .then(pl.col("user_band2_share"))
            .otherwise(None)
        )
        out.append(band_share.alias("user_band_share"))
        out.append(
            (pl.col("item_price_pct") - pl.col("user_price_pct")).abs().alias("price_pct_gap")
        )
    if {"user_category_events", "item_category_global_share", "item_category_pop_share"} <= have:
        events = pl.col("user_category_events").fill_null(0)
        share = (
            pl.col("user_category_share").fill_null(0.0) if "user_category_share" in have else 0.0
        )
        affinity = (share * events + TASTE_PRIOR * pl.col("item_category_global_share")) / (
            events + TASTE_PRIOR
        )
        taste = affinity * pl.col("item_category_pop_share")
        if band_share is not None:
            taste = taste * band_share.fill_null(1.0 / 3.0)
        out.append(affinity.alias("user_category_affinity"))
        out.append(taste.alias("taste_score"))
        if {"user_category_buys", "user_category_purchases"} <= have:
            # Purchases say more about what a shopper buys than views; few purchases lean on
            # the affinity from all events.
            buys = pl.col("user_category_buys").fill_null(0)
            bought_here = pl.col("user_category_purchases").fill_null(0.0)
            buy_affinity = (bought_here + TASTE_PRIOR * affinity) / (buys + TASTE_PRIOR)
            out.append(buy_affinity.alias("user_category_buy_affinity"))
            if "item_category_purchase_share" in have:
                buy_taste = buy_affinity * pl.col("item_category_purchase_share")
                if band_share is not None:
                    buy_taste = buy_taste * band_share.fill_null(1.0 / 3.0)
                out.append(buy_taste.alias("taste_buy_score"))
        if "item_category_purchase_share" in have:
            bought = affinity * pl.col("item_category_purchase_share")
            if band_share is not None:
                bought = bought * band_share.fill_null(1.0 / 3.0)
            out.append(bought.alias("taste_purchase_score"))
    return out


def candidate_expressions(generators: Sequence[str], columns: Sequence[str]) -> list[pl.Expr]:
    """Per-user views of the generators' output, comparable across users and refits: each
    score over the user's best score from that generator, the number of generators that
    proposed the candidate and its reciprocal-rank fusion."""
    present = [g for g in generators if f"{g}_score" in columns]
    out: list[pl.Expr] = []
    if present:
        out.append(
            pl.sum_horizontal([pl.col(f"{g}_rank").is_not_null() for g in present]).alias("sources")
        )
        out.append(
            pl.sum_horizontal(
                [(1.0 / (60.0 + pl.col(f"{g}_rank"))).fill_null(0.0) for g in present]
            ).alias("rrf")
        )
    return out
