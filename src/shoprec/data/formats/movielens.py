"""``movielens``: MovieLens 100K (``u.data``, ``u.item``, ``u.user``) or 1M-style
(``ratings.dat``, ``movies.dat``, ``users.dat``) files, in any combination.

Ratings become ``rating`` events whose value is the rating. Movies become items with their
genres as category (the first genre) and attributes; ``u.item`` is Latin-1 encoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl

from shoprec.config import IngestConfig
from shoprec.data.formats.base import SourceData, pick_file, register, unexpected_files
from shoprec.data.formats.reading import RawTable, read_delimited, read_lines
from shoprec.data.report import FILE, LINE, Check, split_rejects
from shoprec.data.schema import (
    ATTRIBUTES,
    CATEGORY,
    CREATED_AT,
    EVENT_TYPE,
    ITEM_ID,
    TEXT,
    TITLE,
    TS,
    USER_ID,
    VALUE,
    json_attributes,
    parse_float,
    parse_float_failed,
    parse_timestamps,
)

__all__ = ["GENRES", "MovieLensAdapter"]

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_U_ITEM = ("movie_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES)
_RATING = ("user", "movie", "rating", "timestamp")


def _split_double_colon(table: RawTable, names: Sequence[str]) -> RawTable:
    """The ``::``-separated ``.dat`` files: split each line, rejecting wrong field counts."""
    parts = pl.col("text").str.split("::")
    frame = table.frame.with_columns(parts.alias("__parts"))
    kept, rejects = split_rejects(
        frame,
        [
            Check(
                f"wrong number of fields (expected {len(names)})",
                "",
                parts.list.len() != len(names),
                parts.list.len().cast(pl.String) + " fields",
            )
        ],
        table.path,
    )
    kept = kept.select(LINE, *[pl.col("__parts").list.get(i).alias(n) for i, n in enumerate(names)])
    return RawTable(kept, pl.concat([table.rejects, rejects]), table.path)


@register("movielens", "MovieLens ratings and movies (u.data/u.item or ratings.dat/movies.dat)")
class MovieLensAdapter:
    name: ClassVar[str] = "movielens"
    summary: ClassVar[str] = "MovieLens 100K / 1M files"

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    def read(self, paths: Sequence[Path]) -> SourceData:
        ratings_100k = pick_file(paths, "u.data")
        ratings_dat = pick_file(paths, "ratings.dat")
        items_100k = pick_file(paths, "u.item")
        items_dat = pick_file(paths, "movies.dat")
        users_100k = pick_file(paths, "u.user")
        users_dat = pick_file(paths, "users.dat")
        used = [ratings_100k, ratings_dat, items_100k, items_dat, users_100k, users_dat]
        unexpected_files(paths, used, "u.data, u.item, u.user, ratings.dat, movies.dat, users.dat")
        source = SourceData()
        events = []
        if ratings_100k:
            events.append(
                self._ratings(
                    source,
                    read_delimited(ratings_100k, separator="\t", names=_RATING, quote_char=None),
                )
            )
        if ratings_dat:
            events.append(
                self._ratings(
                    source,
                    _split_double_colon(read_lines(ratings_dat, encoding="latin-1"), _RATING),
                )
            )
        if events:
            source.events = pl.concat(events, how="vertical")
        items = []
        if items_100k:
            items.append(self._items_100k(source, items_100k))
        if items_dat:
            items.append(self._items_dat(source, items_dat))
        if items:
            source.items = pl.concat(items, how="diagonal_relaxed")
        users = []
        if users_100k:
            users.append(
                self._users(
                    source,
                    read_delimited(
                        users_100k,
                        separator="|",
                        quote_char=None,
                        names=("user", "age", "gender", "occupation", "zip_code"),
                    ),
                )
            )
        if users_dat:
            users.append(
                self._users(
                    source,
                    _split_double_colon(
                        read_lines(users_dat, encoding="latin-1"),
                        ("user", "gender", "age", "occupation", "zip_code"),
                    ),
                )
            )
        if users:
            source.users = pl.concat(users, how="diagonal_relaxed")
        return source

    @staticmethod
    def _ratings(source: SourceData, table: RawTable) -> pl.DataFrame:
        frame = source.take(table)
        ts = parse_timestamps(frame.get_column("timestamp"), ["epoch"])
        frame = frame.with_columns(ts.alias("__ts"), parse_float("rating").alias("__rating"))
        kept, rejects = split_rejects(
            frame,
            [
                Check("missing user id", "user", pl.col("user").is_null()),
                Check("missing movie id", "movie", pl.col("movie").is_null()),
                Check(
                    "rating is not a number",
                    "rating",
                    parse_float_failed("rating") | pl.col("rating").is_null(),
                ),
                Check("timestamp is not Unix seconds", "timestamp", pl.col("__ts").is_null()),
            ],
            table.path,
        )
        if rejects.height:
            source.rejects.append(rejects)
        return kept.select(
            FILE,
            LINE,
            pl.col("user").str.strip_chars().alias(USER_ID),
            pl.col("movie").str.strip_chars().alias(ITEM_ID),
            pl.lit("rating").alias(EVENT_TYPE),
            pl.col("__ts").alias(TS),
            pl.col("__rating").alias(VALUE),
        )

    @staticmethod
    def _items_100k(source: SourceData, path: Path) -> pl.DataFrame:
        frame = source.take(
            read_delimited(path, separator="|", names=_U_ITEM, encoding="latin-1", quote_char=None)
        )
        flags = [pl.when(pl.col(g) == "1").then(pl.lit(g)) for g in GENRES]
        released = parse_timestamps(frame.get_column("release_date"), ["%d-%b-%Y"])
        frame = frame.with_columns(
            pl.concat_list(flags).list.drop_nulls().alias("__genres"), released.alias("__released")
        )
        kept, rejects = split_rejects(
            frame,
            [
                Check("missing movie id", "movie_id", pl.col("movie_id").is_null()),
                Check(
                    "bad release date (expected DD-Mon-YYYY)",
                    "release_date",
                    pl.col("release_date").is_not_null() & pl.col("__released").is_null(),
                ),
            ],
            path,
        )
        if rejects.height:
            source.rejects.append(rejects)
        return kept.select(
            FILE,
            LINE,
            pl.col("movie_id").alias(ITEM_ID),
            pl.col("title").alias(TITLE),
            pl.col("__genres").list.first().alias(CATEGORY),
            pl.col("__released").alias(CREATED_AT),
            pl.struct(pl.col("__genres").list.join("|").alias("genres"), pl.col("imdb_url"))
            .struct.json_encode()
            .alias(ATTRIBUTES),
            pl.concat_str(
                [pl.col("title"), pl.col("__genres").list.join(" ")], separator=" "
            ).alias(TEXT),
        )

    @staticmethod
    def _items_dat(source: SourceData, path: Path) -> pl.DataFrame:
        table = _split_double_colon(
            read_lines(path, encoding="latin-1"), ("movie_id", "title", "genres")
        )
        frame = source.take(table)
        return frame.select(
            FILE,
            LINE,
            pl.col("movie_id").alias(ITEM_ID),
            pl.col("title").alias(TITLE),
            pl.col("genres").str.split("|").list.first().alias(CATEGORY),
            json_attributes(["genres"]).alias(ATTRIBUTES),
            pl.concat_str(
                [pl.col("title"), pl.col("genres").str.replace_all("|", " ", literal=True)],
                separator=" ",
            ).alias(TEXT),
        )

    @staticmethod
    def _users(source: SourceData, table: RawTable) -> pl.DataFrame:
        frame = source.take(table)
        return frame.select(
            FILE,
            LINE,
            pl.col("user").alias(USER_ID),
            json_attributes(["age", "gender", "occupation", "zip_code"]).alias(ATTRIBUTES),
        )
