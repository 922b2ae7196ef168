"""The validation gate: which scorer orders the two-stage model's candidates.

The two-stage model can order its candidates in several ways: by its LightGBM ranker, by
reciprocal-rank fusion of the generators, or by one generator alone (its own list, the other
candidates after it). At fit time each way is scored on the gate users, whose labels neither
the generators nor the ranker saw, through the same ``recommend`` that serves (rules and seen
items included); ``auto`` serves the best. So the default model is never worse on held-out
shoppers than a generator it contains, and a ranker that learned nothing is not served.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from shoprec.data.schema import ITEM_ID, USER_ID
from shoprec.exceptions import ConfigError

if TYPE_CHECKING:
    from shoprec.ranking.fitted import FittedTwoStage

__all__ = [
    "SCORERS",
    "choose_scorer",
    "ndcg_at",
    "scorer_values",
    "scoring_memo",
    "scoring_memo_in_use",
    "validation_table",
]

SCORERS = ("ranker", "fusion")
_RRF_OFFSET = 60.0
_NOT_PROPOSED = -1e3  # below every rank of the chosen generator, above non-candidates
_batch = threading.local()  # per thread: the validation gate's memo of scored users


@contextmanager
def scoring_memo() -> Iterator[None]:
    """Within the block, scoring the same users again reuses their candidates and features
    (the validation gate scores one set of users once per scorer)."""
    _batch.memo = {}
    try:
        yield
    finally:
        _batch.memo = None


def scoring_memo_in_use() -> dict[Any, Any] | None:
    """The memo of the enclosing :func:`scoring_memo` block in this thread, if any."""
    memo: dict[Any, Any] | None = getattr(_batch, "memo", None)
    return memo


def scorer_values(
    choice: str,
    ranks: np.ndarray,
    names: Sequence[str],
    predict: Callable[[], np.ndarray] | None,
) -> np.ndarray:
    """The order of candidates under ``choice``; ``ranks`` is candidates × generators (NaN
    where a generator did not propose the candidate), ``predict`` the ranker's scores."""
    if choice == "ranker":
        if predict is None:
            raise ConfigError("the ranker scorer needs a trained ranker")
        predicted: np.ndarray = np.asarray(predict(), dtype=np.float64)
        return predicted
    fused: np.ndarray = np.where(np.isnan(ranks), 0.0, 1.0 / (_RRF_OFFSET + ranks)).sum(axis=1)
    if choice == "fusion":
        return fused
    own = ranks[:, list(names).index(choice)]
    ordered: np.ndarray = np.where(np.isnan(own), _NOT_PROPOSED + fused, -own)
    return ordered


def ndcg_at(recs: pl.DataFrame, truth: pl.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k and recall@k of each user of ``truth`` (binary relevance), in user id order."""
    wanted = truth.select(USER_ID, ITEM_ID).unique().with_columns(pl.lit(1.0).alias("__hit"))
    counts = wanted.group_by(USER_ID).len().sort(USER_ID)
    if counts.height == 0:
        return np.zeros(0), np.zeros(0)
    ideal = np.cumsum([1.0 / math.log2(i + 2) for i in range(k)])
    top = recs.filter(pl.col("rank") <= k).join(wanted, on=[USER_ID, ITEM_ID], how="inner")
    gains = top.group_by(USER_ID).agg(
        (1.0 / (pl.col("rank").cast(pl.Float64) + 1.0).log(2)).sum().alias("dcg"),
        pl.len().alias("hits"),
    )
    per_user = counts.join(gains, on=USER_ID, how="left", maintain_order="left").with_columns(
        pl.col("dcg").fill_null(0.0), pl.col("hits").fill_null(0)
    )
    best = per_user.get_column("len").clip(1, k).to_numpy() - 1
    ndcg = per_user.get_column("dcg").to_numpy() / ideal[best]
    recall = per_user.get_column("hits").to_numpy() / per_user.get_column("len").to_numpy()
    return ndcg, recall


def validation_table(
    model: FittedTwoStage, users: list[str], truth: pl.DataFrame, *, k: int
) -> list[dict[str, Any]]:
    """Each scorer of ``model`` on ``users``: NDCG@k and recall@k of its served lists, and
    the NDCG of each user (``per_user``, for the paired comparison of :func:`choose_scorer`)."""
    choices = (["ranker"] if model.ranker_ is not None else []) + ["fusion", *model.generators_]
    rows = []
    with scoring_memo():
        for choice in choices:
            model.choice_ = choice
            recs = model.recommend(users, k=k, explain=False)
            ndcg, recall = ndcg_at(recs, truth, k)
            rows.append(
                {
                    "scorer": choice,
                    "ndcg": float(ndcg.mean()) if ndcg.size else 0.0,
                    "recall": float(recall.mean()) if recall.size else 0.0,
                    "k": k,
                    "users": int(ndcg.size),
                    "per_user": ndcg,
                }
            )
    return rows


def choose_scorer(
    configured: str, table: list[dict[str, Any]], generators: Sequence[str], ranker_ok: bool
) -> tuple[str, str]:
    """The scorer to serve and why: the configured one, or under ``auto`` the best of
    ``table``. The ranker, the one scorer fitted to these data, must beat the best of the
    others by more than one standard error of the paired per-user difference (on the same
    users); otherwise the simpler scorer serves. Without a table: the ranker when it learned
    something, else fusion."""
    if configured != "auto":
        if configured not in (*SCORERS, *generators):
            known = ", ".join(["auto", *SCORERS, *generators])
            raise ConfigError(f"scorer {configured!r} is not one of {known}")
        if configured == "ranker" and not ranker_ok:
            return "fusion", "configured ranker, but it learned nothing: fusion"
        return configured, "configured"
    simple = [row for row in table if row["scorer"] != "ranker"]
    ranker = next((row for row in table if row["scorer"] == "ranker"), None)
    if not simple:
        return ("ranker", "no validation") if ranker_ok else ("fusion", "no validation")
    best = max(simple, key=lambda row: row["ndcg"])
    if ranker is None or not ranker_ok:
        return str(best["scorer"]), "best on the validation users (no usable ranker)"
    difference = np.asarray(ranker["per_user"]) - np.asarray(best["per_user"])
    error = float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else 0.0
    gain = float(difference.mean()) if difference.size else 0.0
    if gain > error:
        return "ranker", (
            f"the ranker beats {best['scorer']} by {gain:+.4f} NDCG@{best['k']} "
            f"(standard error {error:.4f}) on {difference.size:,} validation users"
        )
    return str(best["scorer"]), (
        f"the ranker does not beat {best['scorer']} by more than a standard error "
        f"({gain:+.4f} NDCG@{best['k']}, standard error {error:.4f}) on {difference.size:,} "
        "validation users"
    )
