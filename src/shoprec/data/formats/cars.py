"""``cars``: the car-listings CSV (name, year, selling_price, km_driven, fuel, seller_type,
transmission, owner) as items of entity type ``listing``.

A listing's id is its 1-based data row number (the file has no id column). The brand is the
leading word of the name, or a known two-word brand ("Land Rover") when the name's first words
are exactly that brand, compared word by word, never as a substring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, register
from shoprec.data.formats.reading import read_delimited
from shoprec.data.report import FILE, LINE, Check, split_rejects
from shoprec.data.schema import (
    ATTRIBUTES,
    CATEGORY,
    ENTITY_TYPE,
    ITEM_ID,
    PRICE,
    TEXT,
    TITLE,
    json_attributes,
    parse_float,
    parse_float_failed,
)

__all__ = ["MULTI_WORD_BRANDS", "CarsAdapter", "brand_of"]

COLUMNS = (
    "name",
    "year",
    "selling_price",
    "km_driven",
    "fuel",
    "seller_type",
    "transmission",
    "owner",
)
MULTI_WORD_BRANDS = (
    "Land Rover",
    "Mercedes Benz",
    "Aston Martin",
    "Alfa Romeo",
    "Rolls Royce",
    "Maruti Suzuki",
)


def brand_of(name: str | None) -> str | None:
    """The brand a listing's name starts with.

    >>> brand_of("Land Rover Discovery Sport TD4")
    'Land Rover'
    >>> brand_of("Landmark Cruiser X")
    'Landmark'
    >>> brand_of("Mercedes-Benz E-Class 230")
    'Mercedes-Benz'
    """
    if not name or not name.strip():
        return None
    words = name.split()
    for brand in MULTI_WORD_BRANDS:
        brand_words = brand.split()
        head = words[: len(brand_words)]
        if [w.lower() for w in head] == [w.lower() for w in brand_words]:
            return " ".join(head)
    return words[0]


@register("cars", "car-listings CSV as items of entity type 'listing'")
class CarsAdapter:
    name: ClassVar[str] = "cars"
    summary: ClassVar[str] = "car listings CSV"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        source = SourceData()
        listings = []
        for path in paths:
            frame = source.take(read_delimited(path, required=COLUMNS))
            numbers = ("year", "selling_price", "km_driven")
            checks = [Check("missing name", "name", pl.col("name").is_null())]
            checks += [Check(f"{c} is not a number", c, parse_float_failed(c)) for c in numbers]
            checks.append(
                Check(
                    "year out of range",
                    "year",
                    ~parse_float("year").is_between(1886, 2100) & pl.col("year").is_not_null(),
                )
            )
            checks.append(
                Check(
                    "km_driven out of range",
                    "km_driven",
                    ~parse_float("km_driven").is_between(0, 1e9)
                    & pl.col("km_driven").is_not_null(),
                )
            )
            kept, rejects = split_rejects(frame, checks, path)
            if rejects.height:
                source.rejects.append(rejects)
            listings.append(kept)
        rows = pl.concat(listings, how="vertical")
        # The id is the row's position among the file's data rows (line 2 is listing 1).
        rows = rows.with_columns(
            (pl.col(LINE) - 1).cast(pl.String).alias(ITEM_ID),
            pl.col("name")
            .str.strip_chars()
            .map_elements(brand_of, return_dtype=pl.String)
            .alias("brand"),
            parse_float("year").cast(pl.Int64).alias("year"),
            parse_float("km_driven").cast(pl.Int64).alias("km_driven"),
        )
        rows = rows.with_columns(
            pl.col("name")
            .str.strip_chars()
            .str.slice(pl.col("brand").str.len_chars())
            .str.strip_chars()
            .alias("model")
        )
        attributes = [
            "brand",
            "model",
            "year",
            "km_driven",
            "fuel",
            "seller_type",
            "transmission",
            "owner",
        ]
        source.items = rows.select(
            FILE,
            LINE,
            ITEM_ID,
            pl.lit("listing").alias(ENTITY_TYPE),
            pl.col("name").str.strip_chars().alias(TITLE),
            pl.col("brand").alias(CATEGORY),
            parse_float("selling_price").alias(PRICE),
            json_attributes(attributes).alias(ATTRIBUTES),
            pl.concat_str(
                [pl.col("name"), pl.col("fuel"), pl.col("transmission"), pl.col("seller_type")],
                separator=" ",
                ignore_nulls=True,
            ).alias(TEXT),
        )
        return source
