"""The catalogue as the API serves it: item details, filters and search over arrays.

Loaded once per published run from the lake (items and users), so a request never reads a
file. Search is a case-insensitive substring match over each item's title, category and
attribute values, with the filters a marketplace needs (category, entity type, price range,
brand, fuel, year range, any attribute by ``key=value``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from shoprec.data.schema import ITEMS_SCHEMA, USERS_SCHEMA

__all__ = ["PRICE_DECIMALS", "Catalogue", "SearchQuery", "UserDirectory"]

PRICE_DECIMALS = 2  # the cents of the shop's currency


def _attributes(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    category: str | None = None
    entity_type: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    year_min: int | None = None
    year_max: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)  # brand, fuel, ... -> value


class Catalogue:
    """Every item of the lake, by id and by row."""

    def __init__(self, items: pl.DataFrame) -> None:
        items = items.select(
            [
                pl.col(c) if c in items.columns else pl.lit(None, dtype).alias(c)
                for c, dtype in ITEMS_SCHEMA.items()
            ]
        ).unique("item_id", keep="last", maintain_order=True)
        self.frame = items
        self.ids: list[str] = items.get_column("item_id").to_list()
        self.row = {item: position for position, item in enumerate(self.ids)}
        self.titles: list[str | None] = items.get_column("title").to_list()
        self.categories: list[str | None] = items.get_column("category").to_list()
        self.entity_types: list[str] = items.get_column("entity_type").fill_null("item").to_list()
        # to the cent: a price stored as a 32-bit float reads back as 2.9899999999999998
        self.price = np.round(items.get_column("price").cast(pl.Float64).to_numpy(), PRICE_DECIMALS)
        self.available = items.get_column("available").fill_null(True).to_numpy().astype(bool)
        self.attributes = [_attributes(a) for a in items.get_column("attributes").to_list()]
        self._codes = {
            name: self._encode(values)
            for name, values in (("category", self.categories), ("entity_type", self.entity_types))
        }
        haystack = (
            pl.concat_str(
                [
                    pl.col("title").fill_null(""),
                    pl.col("category").fill_null(""),
                    pl.col("attributes").fill_null(""),
                    pl.col("text").fill_null(""),
                ],
                separator=" ",
            )
            .str.to_lowercase()
            .alias("__text")
        )
        self._search = items.select(haystack).get_column("__text")
        attribute_keys = sorted({key for a in self.attributes for key in a})
        self._attribute_columns = {
            key: pl.Series(
                key, [None if a.get(key) is None else str(a[key]).lower() for a in self.attributes]
            )
            for key in attribute_keys
        }
        year = self._attribute_columns.get("year")
        self._year = (
            year.cast(pl.Float64, strict=False).to_numpy()
            if year is not None
            else np.full(len(self.ids), np.nan)
        )

    @staticmethod
    def _encode(values: Sequence[str | None]) -> tuple[dict[str, int], np.ndarray]:
        """Each distinct value's code, and the code of every row (-1 for none)."""
        codes: dict[str, int] = {}
        rows = np.fromiter(
            (-1 if v is None else codes.setdefault(v, len(codes)) for v in values),
            np.int64,
            len(values),
        )
        return codes, rows

    def _is(self, name: str, value: str) -> np.ndarray:
        codes, rows = self._codes[name]
        return np.asarray(rows == codes.get(value, -2))

    def type_matches(self, rows: np.ndarray, entity_type: str) -> np.ndarray:
        """Whether each of ``rows`` (catalogue rows, all valid) is of ``entity_type``."""
        codes, of_row = self._codes["entity_type"]
        return np.asarray(of_row[rows] == codes.get(entity_type, -2))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.row

    @property
    def categories_list(self) -> list[str]:
        return sorted({c for c in self.categories if c})

    def summary(self, item_id: str) -> dict[str, Any]:
        """What a list shows of an item: title, category, price."""
        position = self.row.get(item_id)
        if position is None:
            return {"title": None, "category": None, "price": None}
        price = self.price[position]
        return {
            "title": self.titles[position],
            "category": self.categories[position],
            "price": None if np.isnan(price) else float(price),
        }

    def detail(self, item_id: str) -> dict[str, Any] | None:
        position = self.row.get(item_id)
        if position is None:
            return None
        row = self.frame.row(position, named=True)
        created = row["created_at"]
        return {
            "item_id": item_id,
            "entity_type": self.entity_types[position],
            **self.summary(item_id),
            "available": bool(self.available[position]),
            "created_at": created.isoformat() if created is not None else None,
            "attributes": self.attributes[position],
            "text": row["text"],
            "lat": row["lat"],
            "lon": row["lon"],
        }

    def mask(
        self,
        *,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        entity_type: str | None = None,
    ) -> np.ndarray | None:
        """Rows passing the filters (None: no filter asked)."""
        if category is None and min_price is None and max_price is None and entity_type is None:
            return None
        keep = np.ones(len(self.ids), dtype=bool)
        if category is not None:
            keep &= self._is("category", category)
        if entity_type is not None:
            keep &= self._is("entity_type", entity_type)
        with np.errstate(invalid="ignore"):
            if min_price is not None:
                keep &= self.price >= min_price
            if max_price is not None:
                keep &= self.price <= max_price
        return keep

    def search(self, query: SearchQuery, limit: int, offset: int = 0) -> tuple[int, list[str]]:
        """How many items match, and the ids of ``limit`` of them from ``offset``."""
        keep = self.mask(
            category=query.category,
            min_price=query.min_price,
            max_price=query.max_price,
            entity_type=query.entity_type,
        )
        if keep is None:
            keep = np.ones(len(self.ids), dtype=bool)
        for word in query.text.lower().split():
            keep &= self._search.str.contains(word, literal=True).to_numpy()
        with np.errstate(invalid="ignore"):
            if query.year_min is not None:
                keep &= self._year >= query.year_min
            if query.year_max is not None:
                keep &= self._year <= query.year_max
        for key, value in query.attributes.items():
            column = self._attribute_columns.get(key)
            if column is None:
                keep[:] = False
                break
            keep &= (column == value.lower()).fill_null(False).to_numpy()
        matches = np.flatnonzero(keep)
        return int(matches.size), [self.ids[i] for i in matches[offset : offset + limit]]

    def ids_of_type(self, entity_type: str) -> list[str]:
        return [self.ids[i] for i in np.flatnonzero(self._is("entity_type", entity_type))]

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        return np.fromiter((self.row.get(i, -1) for i in item_ids), np.int64, len(item_ids))


class UserDirectory:
    """Users of the lake: sign-in by id or e-mail, and their profile (PII kept apart)."""

    def __init__(self, users: pl.DataFrame) -> None:
        users = users.select(
            [
                pl.col(c) if c in users.columns else pl.lit(None, dtype).alias(c)
                for c, dtype in USERS_SCHEMA.items()
            ]
        )
        self.profiles: dict[str, dict[str, Any]] = {}
        self.by_email: dict[str, str] = {}
        for row in users.iter_rows(named=True):
            self.profiles[row["user_id"]] = row
            if row["email"]:
                self.by_email[row["email"].strip().lower()] = row["user_id"]

    def __len__(self) -> int:
        return len(self.profiles)

    def resolve(self, login: str) -> str | None:
        """The user id a login (an id or an e-mail address) names, if any."""
        login = login.strip()
        if login in self.profiles:
            return login
        return self.by_email.get(login.lower())

    def profile(self, user_id: str, *, private: bool) -> dict[str, Any] | None:
        row = self.profiles.get(user_id)
        if row is None:
            return None
        profile: dict[str, Any] = {
            "user_id": user_id,
            "attributes": _attributes(row["attributes"]),
            "lat": row["lat"],
            "lon": row["lon"],
        }
        if private:
            profile["email"] = row["email"]
        return profile
