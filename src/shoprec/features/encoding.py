"""Geo-encoding and categorical encodings for the ranker's features.

* :func:`geohash` turns coordinates into geohash cells (base-32 strings); :func:`haversine_km`
  gives great-circle distances.
* :class:`CategoricalEncoder` turns a string column into numbers, as chosen per feature:
  ``label`` (one integer code per value seen in training, -1 for others), ``onehot`` (one 0/1
  column per frequent value) or ``hashing`` (a stable hash into a fixed number of buckets, for
  columns with many values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import polars_hash as plh

__all__ = ["CategoricalEncoder", "Encoding", "geohash", "haversine_km"]

Encoding = Literal["label", "onehot", "hashing"]
_BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"


def geohash(lat: np.ndarray, lon: np.ndarray, precision: int = 5) -> list[str | None]:
    """Geohash cells of coordinates (None where a coordinate is missing).

    >>> geohash(np.array([57.64911]), np.array([10.40744]), 6)
    ['u4pruy']
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    lat_range = np.stack([np.full(lat.size, -90.0), np.full(lat.size, 90.0)])
    lon_range = np.stack([np.full(lon.size, -180.0), np.full(lon.size, 180.0)])
    codes = np.zeros((lat.size, precision), dtype=np.int64)
    even = True
    for bit in range(precision * 5):
        ranges, values = (lon_range, lon) if even else (lat_range, lat)
        middle = (ranges[0] + ranges[1]) / 2
        upper = values >= middle
        codes[:, bit // 5] = (codes[:, bit // 5] << 1) | upper
        ranges[0] = np.where(upper, middle, ranges[0])
        ranges[1] = np.where(upper, ranges[1], middle)
        even = not even
    missing = np.isnan(lat) | np.isnan(lon)
    return [
        None if gone else "".join(_BASE32[c] for c in row)
        for row, gone in zip(codes.tolist(), missing.tolist(), strict=True)
    ]


def haversine_km(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    """Great-circle distance in kilometres between two coordinate columns."""
    p1, p2 = lat1.radians(), lat2.radians()
    dlat, dlon = p2 - p1, (lon2 - lon1).radians()
    a = (dlat / 2).sin() ** 2 + p1.cos() * p2.cos() * (dlon / 2).sin() ** 2
    return 2 * 6371.0 * a.sqrt().arcsin()


@dataclass
class CategoricalEncoder:
    """Fitted on training values, applied to any frame; see the module docstring."""

    column: str
    encoding: Encoding = "label"
    buckets: int = 64
    max_onehot: int = 20
    codes_: dict[str, int] = field(default_factory=dict)

    def fit(self, values: pl.Series) -> CategoricalEncoder:
        counted = values.drop_nulls().cast(pl.String).value_counts(sort=True)
        ordered = counted.get_column(counted.columns[0]).to_list()
        if self.encoding == "onehot":
            ordered = ordered[: self.max_onehot]
        self.codes_ = {value: code for code, value in enumerate(sorted(ordered))}
        return self

    @property
    def output_columns(self) -> list[str]:
        if self.encoding == "onehot":
            return [f"{self.column}={value}" for value in self.codes_]
        return [self.column]

    def transform(self, frame: pl.DataFrame) -> list[pl.Expr]:
        """Expressions producing :attr:`output_columns` (floats; NaN for unknown values)."""
        source = pl.col(self.column).cast(pl.String)
        if self.encoding == "label":
            return [
                source.replace_strict(self.codes_, default=None, return_dtype=pl.Float64).alias(
                    self.column
                )
            ]
        if self.encoding == "hashing":
            hashed = plh.concat_str([source.fill_null("")], separator="").nchash.xxh3_64()
            bucket = hashed % self.buckets
            return [bucket.cast(pl.Float64).alias(self.column)]
        return [
            (source == value).cast(pl.Float64).fill_null(0.0).alias(f"{self.column}={value}")
            for value in self.codes_
        ]
