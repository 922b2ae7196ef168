"""Attribute vectors of items, and how vectors of several blocks are combined.

* :class:`AttributeEncoder` learns from the catalogue which attributes are numeric (``price``,
  as ``log1p``, and numeric values of the ``attributes`` JSON) and which are categorical
  (``category`` and string attributes with at most ``max_categories`` values), their means,
  spreads and values; it then turns any items into a scaled numeric block and a one-hot block,
  so an item added later gets a vector in the same space.
* :func:`combine_blocks` weighs blocks after scaling each to unit norm per row, and normalises
  the whole: ``unit([w1 * unit(b1), w2 * unit(b2), ...])``. The content model's
  :class:`~shoprec.models.content.ItemVectoriser` combines the text block (from any provider)
  with the numeric and categorical blocks this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from shoprec.data.schema import ATTRIBUTES, CATEGORY, PRICE
from shoprec.exceptions import NotFittedError

__all__ = ["AttributeEncoder", "combine_blocks", "unit_rows"]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit Euclidean norm (rows of zeros stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0))


def combine_blocks(blocks: Sequence[tuple[np.ndarray, float]], rows: int) -> np.ndarray:
    """``unit([w * unit(block) for block, w in blocks])`` as float32; blocks weighted zero are
    left out, and no block at all gives one zero column."""
    kept = [
        weight * unit_rows(np.asarray(block, np.float64)) for block, weight in blocks if weight > 0
    ]
    if not kept:
        return np.zeros((rows, 1), np.float32)
    return unit_rows(np.hstack(kept)).astype(np.float32)


def _decoded_attributes(items: pl.DataFrame) -> pl.Series | None:
    if ATTRIBUTES not in items.columns or not items.get_column(ATTRIBUTES).drop_nulls().len():
        return None
    decoded = items.get_column(ATTRIBUTES).str.json_decode(infer_schema_length=None)
    return decoded if isinstance(decoded.dtype, pl.Struct) else None


class AttributeEncoder:
    """Numeric (standardised, missing = mean) and one-hot categorical blocks; see the module
    docstring. ``numeric_weight`` and ``categorical_weight`` weigh the two blocks."""

    def __init__(
        self,
        numeric_weight: float = 0.5,
        categorical_weight: float = 1.0,
        max_categories: int = 200,
    ) -> None:
        self.numeric_weight = numeric_weight
        self.categorical_weight = categorical_weight
        self.max_categories = max_categories

    def fit(self, items: pl.DataFrame) -> AttributeEncoder:
        attributes = _decoded_attributes(items)
        self.numeric_: list[str] = [PRICE] if PRICE in items.columns else []
        names: list[str] = [CATEGORY] if CATEGORY in items.columns else []
        if attributes is not None:
            for name in attributes.struct.fields:
                column = attributes.struct.field(name)
                if column.dtype.is_numeric():
                    self.numeric_.append(name)
                elif column.dtype == pl.String and column.n_unique() <= self.max_categories:
                    names.append(name)
        self.categories_: dict[str, list[str]] = {}
        for column in self._categorical(items, names):
            self.categories_[column.name] = sorted(column.drop_nulls().unique().to_list())
        numeric = self._numeric(items)
        present = ~np.isnan(numeric)
        counts = present.sum(axis=0)
        self.means_ = np.where(counts > 0, np.nansum(numeric, axis=0) / np.maximum(counts, 1), 0)
        filled = np.where(present, numeric, self.means_)
        spread = filled.std(axis=0) if filled.size else np.zeros(0)
        self.spreads_ = np.where(spread > 0, spread, 1.0)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "numeric_"):
            raise NotFittedError("the attribute encoder is not fitted: call fit(items) first")

    def _numeric(self, items: pl.DataFrame) -> np.ndarray:
        attributes = _decoded_attributes(items)
        missing = np.full(items.height, np.nan)
        columns = []
        for name in self.numeric_:
            if name == PRICE:
                columns.append(
                    np.log1p(items.get_column(PRICE).cast(pl.Float64).to_numpy())
                    if PRICE in items.columns
                    else missing
                )
            elif attributes is not None and name in attributes.struct.fields:
                field = attributes.struct.field(name)
                columns.append(
                    field.cast(pl.Float64).to_numpy() if field.dtype.is_numeric() else missing
                )
            else:
                columns.append(missing)
        return np.column_stack(columns) if columns else np.zeros((items.height, 0))

    @staticmethod
    def _categorical(items: pl.DataFrame, names: Sequence[str]) -> list[pl.Series]:
        attributes = _decoded_attributes(items)
        columns = []
        for name in names:
            if name == CATEGORY and CATEGORY in items.columns:
                columns.append(items.get_column(CATEGORY).cast(pl.String).alias(name))
            elif attributes is not None and name in attributes.struct.fields:
                columns.append(attributes.struct.field(name).cast(pl.String).alias(name))
            else:
                columns.append(pl.Series(name, [None] * items.height, dtype=pl.String))
        return columns

    def numeric(self, items: pl.DataFrame) -> np.ndarray:
        """The standardised numeric block, ``(n, len(numeric_))``."""
        self._check_fitted()
        values = self._numeric(items)
        values = np.where(np.isnan(values), self.means_, values)
        return np.asarray((values - self.means_) / self.spreads_)

    def onehot(self, items: pl.DataFrame) -> np.ndarray:
        """The one-hot block: one column per known value of each categorical attribute (values
        not seen in fitting get no column)."""
        self._check_fitted()
        parts = []
        for column in self._categorical(items, list(self.categories_)):
            values = self.categories_[column.name]
            codes = (
                column.replace_strict(
                    {v: i for i, v in enumerate(values)}, default=-1, return_dtype=pl.Int64
                )
                .fill_null(-1)
                .to_numpy()
            )
            block = np.zeros((items.height, len(values)))
            known = np.flatnonzero(codes >= 0)
            block[known, codes[known]] = 1.0
            parts.append(block)
        return np.hstack(parts) if parts else np.zeros((items.height, 0))

    def blocks(self, items: pl.DataFrame) -> list[tuple[np.ndarray, float]]:
        """The non-empty blocks with their weights, for :func:`combine_blocks`."""
        self._check_fitted()
        result = []
        if self.numeric_:
            result.append((self.numeric(items), self.numeric_weight))
        if self.categories_:
            result.append((self.onehot(items), self.categorical_weight))
        return result

    def transform(self, items: pl.DataFrame) -> np.ndarray:
        """Attribute vectors of ``items``: the weighted blocks combined, float32."""
        return combine_blocks(self.blocks(items), items.height)
