from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from shoprec.embeddings.attributes import (
    AttributeEncoder,
    combine_blocks,
    unit_rows,
)
from shoprec.exceptions import NotFittedError


def _items(rows: list[tuple[str, str | None, float | None, dict[str, object]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [r[0] for r in rows],
            "category": [r[1] for r in rows],
            "price": [r[2] for r in rows],
            "attributes": [json.dumps(r[3]) for r in rows],
        },
        schema={
            "item_id": pl.String,
            "category": pl.String,
            "price": pl.Float64,
            "attributes": pl.String,
        },
    )


CATALOGUE = _items(
    [
        ("a", "shoes", 10.0, {"colour": "red", "size": 40}),
        ("b", "shoes", 100.0, {"colour": "blue", "size": 42}),
        ("c", "hats", None, {"colour": "red", "size": 1}),
        ("d", None, 1000.0, {"colour": None, "size": None}),
    ]
)


def test_learns_numeric_and_categorical_attributes() -> None:
    encoder = AttributeEncoder().fit(CATALOGUE)
    assert encoder.numeric_ == ["price", "size"]
    assert encoder.categories_ == {"category": ["hats", "shoes"], "colour": ["blue", "red"]}
    numeric = encoder.numeric(CATALOGUE)
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-12)  # missing = the mean
    assert numeric[2, 0] == pytest.approx(0.0)  # c has no price
    assert numeric[0, 0] < numeric[1, 0] < numeric[3, 0]  # log price, ordered
    onehot = encoder.onehot(CATALOGUE)
    np.testing.assert_array_equal(onehot, [[0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]])


def test_transform_of_new_items_uses_what_was_learned() -> None:
    encoder = AttributeEncoder(numeric_weight=0.5, categorical_weight=1.0).fit(CATALOGUE)
    new = _items([("e", "bags", 10.0, {"colour": "red", "size": 40, "brand": "x"})])
    vectors = encoder.transform(new)
    assert vectors.shape == (1, 2 + 4)
    assert vectors.dtype == np.float32
    assert vectors[0, 2] == 0.0
    assert vectors[0, 3] == 0.0
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0)
    assert np.allclose(vectors[0, :2], encoder.transform(CATALOGUE.head(1))[0, :2])


def test_string_attributes_with_many_values_are_not_one_hot() -> None:
    encoder = AttributeEncoder(max_categories=1).fit(CATALOGUE)
    assert "colour" not in encoder.categories_


def test_combine_blocks_unit_normalises_each_block_then_the_whole() -> None:
    text = np.array([[3.0, 4.0], [0.0, 0.0]])
    attributes = np.array([[10.0], [2.0]])
    combined = combine_blocks([(text, 1.0), (attributes, 0.5)], 2)
    expected = np.array([0.6, 0.8, 0.5]) / np.linalg.norm([0.6, 0.8, 0.5])
    np.testing.assert_allclose(combined[0], expected, rtol=1e-6)
    np.testing.assert_allclose(combined[1], [0.0, 0.0, 1.0])
    only_text = combine_blocks([(text, 1.0), (attributes, 0.0)], 2)
    np.testing.assert_allclose(only_text[:, :2], unit_rows(text))
    np.testing.assert_allclose(only_text[:, 2:], 0.0)
    assert combine_blocks([], 3).shape == (3, 1)


def test_unfitted_encoder() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        AttributeEncoder().transform(CATALOGUE)
