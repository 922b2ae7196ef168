"""The catalogue that lists, filters and describes items for the API and the storefront."""

from __future__ import annotations

import json

import polars as pl

from shoprec.serving.catalogue import Catalogue


def test_prices_are_whole_cents_in_json_and_in_filters() -> None:
    # a price kept as a 32-bit float reads back as 2.9899999999999998
    items = pl.DataFrame(
        {"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "price": [2.99, 0.1, None]},
        schema_overrides={"price": pl.Float32},
    )
    assert float(items.get_column("price").cast(pl.Float64)[0]) != 2.99  # the noise is real
    catalogue = Catalogue(items)
    assert json.dumps(catalogue.summary("a")["price"]) == "2.99"
    assert json.dumps(catalogue.detail("b")["price"]) == "0.1"  # type: ignore[index]
    assert catalogue.summary("c")["price"] is None
    exactly = catalogue.mask(min_price=2.99, max_price=2.99)
    assert [catalogue.ids[i] for i in exactly.nonzero()[0]] == ["a"]
