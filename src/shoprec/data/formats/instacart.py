"""``instacart-products``: the Instacart catalogue (``products.csv`` with ``aisles.csv`` and
``departments.csv``), items only.

The category is ``department/aisle`` by name; ids of aisles or departments that the lookup files
do not name are kept as attributes and reported as warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, pick_file, register, unexpected_files
from shoprec.data.formats.reading import read_delimited
from shoprec.data.report import FILE, LINE, Check, split_rejects
from shoprec.data.schema import ATTRIBUTES, CATEGORY, ENTITY_TYPE, ITEM_ID, TEXT, TITLE
from shoprec.exceptions import SourceError

__all__ = ["InstacartProductsAdapter"]


@register("instacart-products", "Instacart products.csv (+ aisles.csv, departments.csv)")
class InstacartProductsAdapter:
    name: ClassVar[str] = "instacart-products"
    summary: ClassVar[str] = "Instacart catalogue"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        products_path = pick_file(paths, "products.csv")
        aisles_path = pick_file(paths, "aisles.csv")
        departments_path = pick_file(paths, "departments.csv")
        unexpected_files(
            paths,
            [products_path, aisles_path, departments_path],
            "products.csv, aisles.csv, departments.csv",
        )
        if products_path is None:
            raise SourceError(paths[0], "instacart-products needs products.csv")
        source = SourceData()
        products = source.take(
            read_delimited(
                products_path, required=("product_id", "product_name", "aisle_id", "department_id")
            )
        )
        products, rejects = split_rejects(
            products,
            [
                Check("missing product id", "product_id", pl.col("product_id").is_null()),
                Check("missing product name", "product_name", pl.col("product_name").is_null()),
            ],
            products_path,
        )
        if rejects.height:
            source.rejects.append(rejects)
        for path, key, name in (
            (aisles_path, "aisle_id", "aisle"),
            (departments_path, "department_id", "department"),
        ):
            if path is None:
                products = products.with_columns(pl.lit(None, pl.String).alias(name))
                continue
            lookup = source.take(read_delimited(path, required=(key, name)))
            products = products.join(lookup.select(key, name), on=key, how="left")
            unknown = products.filter(pl.col(key).is_not_null() & pl.col(name).is_null())
            if unknown.height:
                source.warnings.append(
                    f"{path}: {unknown.height} product(s) refer to a {key} not listed here"
                )
        source.items = products.select(
            FILE,
            LINE,
            pl.col("product_id").alias(ITEM_ID),
            pl.lit("product").alias(ENTITY_TYPE),
            pl.col("product_name").alias(TITLE),
            pl.concat_str([pl.col("department"), pl.col("aisle")], separator="/").alias(CATEGORY),
            pl.struct("aisle_id", "department_id", "aisle", "department")
            .struct.json_encode()
            .alias(ATTRIBUTES),
            pl.concat_str(
                [pl.col("product_name"), pl.col("aisle"), pl.col("department")],
                separator=" ",
                ignore_nulls=True,
            ).alias(TEXT),
        )
        return source
