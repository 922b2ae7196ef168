from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, SyntheticShop, generate_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> SyntheticShop:
    return generate_shop(ShopSpec(events=60_000, seed=3), tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def events(shop: SyntheticShop) -> pl.DataFrame:
    return pl.read_parquet(shop.events_path)


@pytest.fixture(scope="module")
def items(shop: SyntheticShop) -> pl.DataFrame:
    return pl.read_csv(shop.items_path, try_parse_dates=True)


def test_same_seed_same_shop_other_seed_other_shop(tmp_path: Path) -> None:
    spec = ShopSpec(events=5_000, seed=11)
    a = generate_shop(spec, tmp_path / "a")
    b = generate_shop(spec, tmp_path / "b")
    c = generate_shop(spec.model_copy(update={"seed": 12}), tmp_path / "c")
    assert pl.read_parquet(a.events_path).equals(pl.read_parquet(b.events_path))
    assert a.items_path.read_bytes() == b.items_path.read_bytes()
    assert not pl.read_parquet(a.events_path).equals(pl.read_parquet(c.events_path))


def test_requested_size_and_time_range(shop: SyntheticShop, events: pl.DataFrame) -> None:
    assert events.height == shop.n_events == 60_000
    days = (events["ts"].max() - events["ts"].min()).days  # type: ignore[operator]
    assert days >= 170  # the whole 180-day range is used, not just its start


def test_funnel_carts_follow_views_and_purchases_follow_carts(events: pl.DataFrame) -> None:
    first = events.group_by("session_id", "item_id", "event_type").agg(pl.col("ts").min())
    wide = first.pivot("event_type", index=["session_id", "item_id"], values="ts")
    carts = wide.filter(pl.col("add_to_cart").is_not_null())
    assert carts.filter(
        pl.col("view").is_null() | (pl.col("view") > pl.col("add_to_cart"))
    ).is_empty()
    bought = wide.filter(pl.col("purchase").is_not_null())
    assert bought.filter(pl.col("add_to_cart").is_null()).is_empty()
    counts = dict(events.group_by("event_type").len().iter_rows())
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > 0


def test_baskets_and_complementary_items(events: pl.DataFrame, items: pl.DataFrame) -> None:
    purchases = events.filter(pl.col("event_type") == "purchase").join(
        items.select("item_id", "category"), on="item_id"
    )
    sizes = purchases.group_by("basket_id").len()
    assert (sizes["len"] >= 2).mean() > 0.3  # type: ignore[operator]
    phone_baskets = purchases.filter(pl.col("category") == "electronics/phones")["basket_id"]
    with_case = purchases.filter(
        pl.col("basket_id").is_in(phone_baskets.implode())
        & (pl.col("category") == "electronics/phone-cases")
    )["basket_id"].n_unique()
    assert with_case / phone_baskets.n_unique() > 0.2


def test_popularity_long_tail_and_price_tail(events: pl.DataFrame, items: pl.DataFrame) -> None:
    views = events.filter(pl.col("event_type") == "view").group_by("item_id").len()
    top = views.sort("len", descending=True).head(len(items) // 5)["len"].sum()
    assert top / views["len"].sum() > 0.5  # a fifth of the catalogue takes most views
    prices = items["price"]
    assert prices.max() / prices.median() > 20  # type: ignore[operator]
    assert items["text"].null_count() == 0


def test_no_item_is_seen_before_it_exists(events: pl.DataFrame, items: pl.DataFrame) -> None:
    start = items["created_at"].min()
    assert (items["created_at"] > start).mean() > 0.2  # type: ignore[operator]
    joined = events.join(items.select("item_id", "created_at"), on="item_id")
    assert joined.filter(pl.col("ts") < pl.col("created_at")).is_empty()


def test_users_have_concentrated_tastes_and_price_tiers(
    shop: SyntheticShop, events: pl.DataFrame, items: pl.DataFrame
) -> None:
    users = pl.read_csv(shop.users_path)
    views = events.filter(pl.col("event_type") == "view").join(
        items.select("item_id", "category"), on="item_id"
    )
    shares = (
        views.group_by("user_id", "category")
        .len()
        .with_columns((pl.col("len") / pl.col("len").sum().over("user_id")).alias("share"))
        .group_by("user_id")
        .agg(pl.col("share").max(), pl.col("len").sum().alias("n"))
        .filter(pl.col("n") >= 10)
    )
    assert shares["share"].mean() > 0.3  # uniform taste over 24 categories would give ~0.1
    spend = (
        events.filter(pl.col("event_type") == "purchase")
        .join(users, on="user_id")
        .join(items.select("item_id", "category"), on="item_id")
        .with_columns((pl.col("price") / pl.col("price").median().over("category")).alias("rel"))
        .group_by("price_tier")
        .agg(pl.col("rel").median())
    )
    relative = dict(spend.iter_rows())
    assert relative["low"] < relative["mid"] < relative["high"]


def test_generated_shop_ingests_cleanly(shop: SyntheticShop, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    for path, fmt in (
        (shop.items_path, "csv"),
        (shop.users_path, "csv"),
        (shop.events_path, "parquet"),
    ):
        report = ingest([path], fmt, workspace=workspace)
        assert report.rows_rejected == 0
    lake = Lake(workspace)
    assert lake.events().height == 60_000
    assert lake.items().height == shop.n_items
    user = lake.users().row(0, named=True)
    assert set(json.loads(user["attributes"])) == {"city", "country", "price_tier"}
    assert json.loads(lake.events()["context"][0]).keys() == {"platform", "country"}


def test_csv_output(tmp_path: Path) -> None:
    shop = generate_shop(ShopSpec(events=2_000, seed=1), tmp_path, events_format="csv")
    assert shop.events_path.name == "events.csv"
    assert pl.read_csv(shop.events_path).height == 2_000
