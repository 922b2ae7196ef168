from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from shoprec.features.encoding import CategoricalEncoder, geohash, haversine_km


def test_geohash_cells_nest_and_missing_coordinates() -> None:
    cells = geohash(np.array([51.5074, 51.5080, np.nan]), np.array([-0.1278, -0.1270, 0.0]), 6)
    assert cells[0] == "gcpvj0"
    assert cells[1][:5] == cells[0][:5]  # 60 m apart: the same 5-character cell
    assert cells[2] is None
    assert geohash(np.array([51.5074]), np.array([-0.1278]), 3) == [cells[0][:3]]


def test_haversine_london_paris() -> None:
    frame = pl.DataFrame({"a": [51.5074], "b": [-0.1278], "c": [48.8566], "d": [2.3522]})
    distance = frame.select(haversine_km(pl.col("a"), pl.col("b"), pl.col("c"), pl.col("d")))
    assert distance.item() == pytest.approx(343.5, abs=1.0)


def test_encoders() -> None:
    train = pl.Series("colour", ["red", "blue", "red", None])
    frame = pl.DataFrame({"colour": ["red", "green", None]})
    label = CategoricalEncoder("colour", "label").fit(train)
    values = frame.select(label.transform(frame)).to_series().to_list()
    assert values[0] == 1.0  # codes in sorted order: blue 0, red 1
    assert values[1] is None or math.isnan(values[1])
    onehot = CategoricalEncoder("colour", "onehot").fit(train)
    assert onehot.output_columns == ["colour=blue", "colour=red"]
    assert frame.select(onehot.transform(frame)).rows() == [(0.0, 1.0), (0.0, 0.0), (0.0, 0.0)]
    hashing = CategoricalEncoder("colour", "hashing", buckets=8).fit(train)
    first = frame.select(hashing.transform(frame)).to_series().to_list()
    assert first == frame.select(hashing.transform(frame)).to_series().to_list()
    assert all(0 <= v < 8 for v in first)
