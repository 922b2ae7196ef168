"""Intra-list diversity of recommendation lists: between item vectors, or between categories."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import sparse

from shoprec.data.schema import CATEGORY, ITEM_ID, USER_ID

__all__ = ["category_diversity", "cosine_diversity", "vector_columns"]

_ROW = "_row"
_N = "_n"


def _as_float(value: object) -> float:
    """A scalar from a one-cell result; ``None`` (the mean of nothing) becomes ``nan``."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def vector_columns(features: pl.DataFrame) -> list[str]:
    columns = []
    for column, dtype in features.schema.items():
        if column == ITEM_ID:
            continue
        inner = dtype.inner if isinstance(dtype, pl.Array | pl.List) else dtype
        if inner.is_numeric():
            columns.append(column)
    return columns


def _feature_matrix(features: pl.DataFrame) -> npt.NDArray[np.float64]:
    blocks = []
    for column in vector_columns(features):
        values = features.get_column(column)
        if isinstance(values.dtype, pl.List):
            widths = values.list.len().unique()
            if widths.len() > 1 or values.null_count():
                raise ValueError(f"item_features: the lists in {column!r} differ in length")
            values = values.list.to_array(int(widths[0]) if widths.len() else 0)
        if isinstance(values.dtype, pl.Array):
            blocks.append(values.cast(pl.Array(pl.Float64, values.dtype.size)).to_numpy())
        else:
            blocks.append(values.cast(pl.Float64).to_numpy().reshape(-1, 1))
    matrix = np.hstack(blocks).astype(np.float64) if blocks else np.zeros((features.height, 0))
    if not np.isfinite(matrix).all():
        raise ValueError("item_features: vector columns must be finite numbers (no null or NaN)")
    return matrix


def cosine_diversity(top: pl.DataFrame, features: pl.DataFrame) -> float:
    """Mean pairwise cosine similarity of a list from the sum of its unit vectors.

    For unit vectors ``u_i``, ``sum_{i != j} u_i . u_j = |sum u_i|^2 - sum |u_i|^2``, so a
    list needs one sparse product instead of one comparison per pair.
    """
    matrix = _feature_matrix(features)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    rows = top.join(features.select(ITEM_ID).with_row_index(_ROW), on=ITEM_ID, how="inner").select(
        (pl.col(USER_ID).rank("dense").cast(pl.Int64) - 1).alias(USER_ID), _ROW
    )
    if rows.is_empty():
        return math.nan
    user_of = rows.get_column(USER_ID).to_numpy()
    n_users = int(user_of.max()) + 1
    membership = sparse.csr_array(
        (np.ones(rows.height), (user_of, rows.get_column(_ROW).to_numpy())),
        shape=(n_users, features.height),
    )
    summed = np.asarray(membership @ unit)
    own = np.asarray(membership @ (unit**2).sum(axis=1))
    sizes = np.bincount(user_of, minlength=n_users)
    keep = sizes >= 2
    if not keep.any():
        return math.nan
    pairs = (sizes[keep] * (sizes[keep] - 1)).astype(np.float64)
    similarity = ((summed[keep] ** 2).sum(axis=1) - own[keep]) / pairs
    return float(np.clip(1.0 - similarity, 0.0, 2.0).mean())


def category_diversity(top: pl.DataFrame, features: pl.DataFrame) -> float:
    categories = features.select(ITEM_ID, pl.col(CATEGORY).cast(pl.String)).drop_nulls()
    size, same = pl.col(_N).sum(), (pl.col(_N) * (pl.col(_N) - 1)).sum()
    lists = (
        top.join(categories, on=ITEM_ID, how="inner")
        .group_by(USER_ID, CATEGORY)
        .agg(pl.len().cast(pl.Int64).alias(_N))
        .group_by(USER_ID)
        .agg((1.0 - same / (size * (size - 1))).alias("diversity"), size.alias("size"))
        .filter(pl.col("size") >= 2)
    )
    return _as_float(lists.get_column("diversity").mean())
