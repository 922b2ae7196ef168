"""A synthetic shop: a seeded, deterministic world for the demo, tests and benchmarks.

The world has structure a recommender can learn and a popularity baseline cannot:

* a catalogue of departments and categories, brands with a price premium, prices with a long
  tail, titles and descriptions as text, a warehouse location, and items added over time;
* users with a latent taste (a sparse mix of categories), a price tier and a home city;
* sessions that follow a funnel (view → add_to_cart → purchase) inside one category, drawn by
  the user's taste and price tier, with baskets that often add a complementary item (a phone
  and a case) — the co-purchase signal;
* a long tail of item popularity inside each category.

Everything is drawn with NumPy from one seed, session chunk by session chunk, so the size runs
from a few thousand to tens of millions of events in bounded memory. The output is three files
in the canonical format (``items.csv``, ``users.csv``, ``events.parquet`` or ``events.csv``),
ready for ``shoprec ingest --format csv|parquet``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CATEGORIES", "ShopSpec", "SyntheticShop", "generate_shop"]

# department, category, base price, nouns, complementary category
CATEGORIES: tuple[tuple[str, str, float, tuple[str, ...], str], ...] = (
    ("electronics", "phones", 420.0, ("Smartphone", "Phone"), "phone-cases"),
    ("electronics", "phone-cases", 18.0, ("Case", "Cover", "Bumper"), "phones"),
    ("electronics", "laptops", 900.0, ("Laptop", "Notebook", "Ultrabook"), "laptop-bags"),
    ("electronics", "laptop-bags", 45.0, ("Laptop Bag", "Sleeve", "Backpack"), "laptops"),
    ("electronics", "headphones", 80.0, ("Headphones", "Earbuds", "Headset"), "phones"),
    ("electronics", "tv", 650.0, ("Smart TV", "OLED TV", "LED TV"), "tv-mounts"),
    ("electronics", "tv-mounts", 35.0, ("Wall Mount", "TV Stand"), "tv"),
    ("home", "coffee-makers", 120.0, ("Coffee Maker", "Espresso Machine"), "coffee"),
    ("home", "cookware", 55.0, ("Frying Pan", "Saucepan", "Wok", "Dutch Oven"), "kitchen-tools"),
    ("home", "kitchen-tools", 15.0, ("Spatula", "Knife", "Peeler", "Grater"), "cookware"),
    ("home", "bedding", 60.0, ("Duvet", "Pillow", "Bed Sheet Set"), "home-decor"),
    ("home", "home-decor", 30.0, ("Vase", "Candle", "Picture Frame", "Lamp"), "bedding"),
    ("fashion", "sneakers", 95.0, ("Sneakers", "Running Shoes", "Trainers"), "socks"),
    ("fashion", "socks", 9.0, ("Socks", "Ankle Socks"), "sneakers"),
    ("fashion", "jackets", 140.0, ("Jacket", "Parka", "Windbreaker"), "scarves"),
    ("fashion", "scarves", 25.0, ("Scarf", "Beanie", "Gloves"), "jackets"),
    ("beauty", "skincare", 28.0, ("Moisturiser", "Serum", "Cleanser", "Toner"), "makeup"),
    ("beauty", "makeup", 22.0, ("Lipstick", "Mascara", "Foundation"), "skincare"),
    ("beauty", "haircare", 14.0, ("Shampoo", "Conditioner", "Hair Oil"), "skincare"),
    ("sports", "yoga", 35.0, ("Yoga Mat", "Yoga Block", "Strap"), "sportswear"),
    ("sports", "sportswear", 40.0, ("Leggings", "Sports Top", "Shorts"), "yoga"),
    ("sports", "bikes", 700.0, ("Road Bike", "Mountain Bike", "City Bike"), "bike-gear"),
    ("sports", "bike-gear", 30.0, ("Helmet", "Bike Light", "Lock"), "bikes"),
    ("grocery", "coffee", 11.0, ("Coffee Beans", "Ground Coffee", "Coffee Pods"), "coffee-makers"),
)
_ADJECTIVES = (
    "Classic",
    "Pro",
    "Ultra",
    "Compact",
    "Premium",
    "Eco",
    "Smart",
    "Essential",
    "Deluxe",
    "Lite",
    "Max",
    "Urban",
    "Nordic",
    "Vintage",
    "Active",
    "Pure",
)
_COLOURS = ("black", "white", "red", "blue", "green", "grey", "beige", "navy", "pink", "silver")
_MATERIALS = (
    "cotton",
    "steel",
    "aluminium",
    "wood",
    "recycled plastic",
    "leather",
    "ceramic",
    "bamboo",
    "glass",
    "wool",
)
_FEATURES = (
    "long-lasting",
    "lightweight",
    "water-resistant",
    "easy to clean",
    "award-winning",
    "ergonomic",
    "energy-saving",
    "handmade",
    "compact",
    "durable",
)
_SYLLABLES = (
    "ka",
    "lo",
    "vi",
    "ra",
    "ten",
    "mo",
    "zu",
    "fer",
    "lin",
    "dor",
    "sa",
    "qu",
    "ex",
    "no",
    "via",
    "tor",
)
_CITIES = (  # name, country, lat, lon
    ("London", "GB", 51.507, -0.128), ("Manchester", "GB", 53.481, -2.243),
    ("Berlin", "DE", 52.520, 13.405), ("Munich", "DE", 48.137, 11.575),
    ("Paris", "FR", 48.857, 2.352), ("Lyon", "FR", 45.764, 4.836),
    ("Madrid", "ES", 40.417, -3.704), ("Milan", "IT", 45.464, 9.190),
    ("Amsterdam", "NL", 52.368, 4.904), ("Warsaw", "PL", 52.230, 21.012),
)  # fmt: skip
_PLATFORMS = np.array(["web", "ios", "android"])
_TIER_PRICE = np.array([0.55, 1.0, 1.9])  # relative price level each tier looks for


class ShopSpec(BaseModel):
    """Size and shape of a synthetic shop."""

    model_config = ConfigDict(extra="forbid")

    events: int = Field(default=200_000, ge=1_000, le=100_000_000)
    users: int | None = Field(default=None, ge=10, description="default: events / 40")
    items: int | None = Field(default=None, ge=50, description="default: events / 250")
    days: int = Field(default=180, ge=7, le=3650)
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    seed: int = 7

    @property
    def n_users(self) -> int:
        return self.users or max(50, self.events // 40)

    @property
    def n_items(self) -> int:
        return self.items or int(np.clip(self.events // 250, 500, 200_000))


@dataclass(frozen=True)
class SyntheticShop:
    """Paths of the files written, and what was drawn."""

    items_path: Path
    users_path: Path
    events_path: Path
    n_items: int
    n_users: int
    n_events: int


def _brand_names(rng: np.random.Generator, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        parts = rng.choice(_SYLLABLES, size=rng.integers(2, 4))
        names.add("".join(parts).capitalize())
    return sorted(names)


def _catalogue(spec: ShopSpec, rng: np.random.Generator) -> pl.DataFrame:
    n = spec.n_items
    departments = sorted({c[0] for c in CATEGORIES})
    brands = {d: _brand_names(rng, 8) for d in departments}
    premium = {b: float(rng.lognormal(0.0, 0.35)) for d in departments for b in brands[d]}
    category_weight = rng.dirichlet(np.full(len(CATEGORIES), 2.0))
    category = rng.choice(len(CATEGORIES), size=n, p=category_weight)
    category[: len(CATEGORIES)] = np.arange(len(CATEGORIES))  # every category has items
    brand_pick = rng.integers(0, 8, size=n)
    noise = rng.lognormal(0.0, 0.55, size=n)
    adjective = rng.integers(0, len(_ADJECTIVES), size=n)
    colour = rng.integers(0, len(_COLOURS), size=n)
    material = rng.integers(0, len(_MATERIALS), size=n)
    feature = rng.integers(0, len(_FEATURES), size=(n, 2))
    start = spec.start.timestamp()
    is_new = rng.random(n) < 0.3
    created = np.where(is_new, start + rng.random(n) * spec.days * 0.9 * 86400, start - 86400)
    city = rng.integers(0, len(_CITIES), size=n)
    rows = []
    for i in range(n):
        dept, cat, base, nouns, _ = CATEGORIES[category[i]]
        brand = brands[dept][brand_pick[i]]
        noun = nouns[i % len(nouns)]
        price = (
            round(base * premium[brand] * noise[i], 0) + 0.99
            if base > 20
            else round(base * premium[brand] * noise[i], 1) + 0.09
        )
        title = f"{brand} {_ADJECTIVES[adjective[i]]} {noun} {chr(65 + i % 26)}{i % 97}"
        text = (
            f"{title}. A {_FEATURES[feature[i, 0]]}, {_FEATURES[feature[i, 1]]} "
            f"{noun.lower()} in {_COLOURS[colour[i]]} {_MATERIALS[material[i]]} from {brand}."
        )
        rows.append(
            (
                f"P{i + 1:06d}",
                title,
                f"{dept}/{cat}",
                brand,
                price,
                text,
                _COLOURS[colour[i]],
                _CITIES[city[i]][2],
                _CITIES[city[i]][3],
            )
        )
    frame = pl.DataFrame(
        rows,
        schema=["item_id", "title", "category", "brand", "price", "text", "colour", "lat", "lon"],
        orient="row",
    )
    return (
        frame.with_columns(
            pl.Series("created_at", (created * 1e6).astype(np.int64)).cast(
                pl.Datetime("us", "UTC")
            ),
            pl.Series("available", rng.random(n) > 0.03),
            pl.Series("__category", category),
            pl.Series("__draw", rng.random(n)),
        )
        .with_columns(
            # Zipf-like popularity by a random rank inside the item's category: a long tail.
            (
                1.0 / pl.col("__draw").rank("ordinal").over("__category").cast(pl.Float64) ** 1.2
            ).alias("__popularity")
        )
        .drop("__draw")
    )


def _users(spec: ShopSpec, rng: np.random.Generator) -> tuple[pl.DataFrame, np.ndarray]:
    n = spec.n_users
    city = rng.integers(0, len(_CITIES), size=n)
    tier = rng.choice(3, size=n, p=[0.45, 0.4, 0.15])
    lat = np.array([_CITIES[c][2] for c in city]) + rng.normal(0, 0.05, n)
    lon = np.array([_CITIES[c][3] for c in city]) + rng.normal(0, 0.05, n)
    taste = rng.dirichlet(np.full(len(CATEGORIES), 0.15), size=n)
    frame = pl.DataFrame(
        {
            "user_id": [f"U{i + 1:07d}" for i in range(n)],
            "email": [f"user{i + 1}@example.com" for i in range(n)],
            "city": [_CITIES[c][0] for c in city],
            "country": [_CITIES[c][1] for c in city],
            "price_tier": np.array(["low", "mid", "high"])[tier],
            "lat": np.round(lat, 4),
            "lon": np.round(lon, 4),
        }
    )
    activity = rng.lognormal(0.0, 1.0, size=n)
    return frame.with_columns(
        pl.Series("__tier", tier), pl.Series("__activity", activity)
    ), np.cumsum(taste, axis=1)


class _ItemSampler:
    """Draws items inside (category, price band) buckets in proportion to popularity."""

    def __init__(self, items: pl.DataFrame) -> None:
        category = items["__category"].to_numpy()
        price = items["price"].to_numpy()
        band = np.zeros(price.size, dtype=np.int64)
        for c in range(len(CATEGORIES)):
            mask = category == c
            if mask.sum() >= 3:
                low, high = np.quantile(price[mask], [1 / 3, 2 / 3])
                band[mask] = (price[mask] > low).astype(int) + (price[mask] > high).astype(int)
        self.created = items["created_at"].dt.epoch("s").to_numpy()
        self.n_buckets = len(CATEGORIES) * 3
        bucket = category * 3 + band
        order = np.lexsort((np.arange(price.size), bucket))
        self.items = order
        weights = items["__popularity"].to_numpy()[order]
        sorted_bucket = bucket[order]
        totals = np.bincount(sorted_bucket, weights=weights, minlength=self.n_buckets)
        cum = np.cumsum(weights) - np.concatenate(([0.0], np.cumsum(totals)))[sorted_bucket]
        self.keys = sorted_bucket + cum / totals[sorted_bucket]
        present = np.bincount(sorted_bucket, minlength=self.n_buckets) > 0
        self.fallback = np.where(present, np.arange(self.n_buckets), -1)
        for b in range(self.n_buckets):  # an empty band borrows from its category's other bands
            if self.fallback[b] < 0:
                siblings = [s for s in range(b - b % 3, b - b % 3 + 3) if present[s]]
                self.fallback[b] = siblings[0] if siblings else int(np.flatnonzero(present)[0])

    def draw(self, rng: np.random.Generator, bucket: np.ndarray, at: np.ndarray) -> np.ndarray:
        bucket = self.fallback[bucket]
        picked = self.items[np.searchsorted(self.keys, bucket + rng.random(bucket.size))]
        for _ in range(4):  # an item cannot be seen before it is added to the catalogue
            early = self.created[picked] > at
            if not early.any():
                break
            picked[early] = self.items[
                np.searchsorted(self.keys, bucket[early] + rng.random(int(early.sum())))
            ]
        still = self.created[picked] > at
        picked[still] = -1
        return picked


# Events of one type in a chunk of sessions: session (in the chunk), item, time in seconds, type
# and value, one entry per event.
_Drawn = tuple[np.ndarray, np.ndarray, np.ndarray, str, np.ndarray]


def _sessions_chunk(
    rng: np.random.Generator,
    starts: np.ndarray,
    session_users: np.ndarray,
    first_session: int,
    users: pl.DataFrame,
    taste_cum: np.ndarray,
    sampler: _ItemSampler,
    items: pl.DataFrame,
) -> pl.DataFrame:
    """The events of the sessions starting at ``starts`` (numbered from ``first_session``),
    sorted by time."""
    drawn = _session_events(rng, starts, session_users, users, taste_cum, sampler, items)
    return _events_frame(rng, drawn, starts.size, session_users, first_session, users, items)


def _session_events(
    rng: np.random.Generator,
    starts: np.ndarray,
    session_users: np.ndarray,
    users: pl.DataFrame,
    taste_cum: np.ndarray,
    sampler: _ItemSampler,
    items: pl.DataFrame,
) -> list[_Drawn]:
    """Each session views items of one category in the user's price tier (mostly); an item
    that fits the tier's price is carted more often, and a cart is bought in some sessions;
    some purchases bring a complement from the category that goes with it."""
    n = starts.size
    u = rng.random(n)
    category = (taste_cum[session_users] < u[:, None]).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    tier = users["__tier"].to_numpy()[session_users]
    band = np.where(rng.random(n) < 0.75, tier, rng.integers(0, 3, n))
    n_views = 1 + rng.geometric(0.35, size=n)
    session_of = np.repeat(np.arange(n), n_views)
    step = np.arange(session_of.size) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    gaps = rng.exponential(45.0, size=session_of.size)
    view_ts = starts[session_of] + step * 40 + gaps
    view_item = sampler.draw(rng, category[session_of] * 3 + band[session_of], view_ts)
    price_level = (
        items["price"].to_numpy()
        / np.array([c[2] for c in CATEGORIES])[items["__category"].to_numpy()]
    )
    fit = np.exp(-np.abs(np.log(price_level[view_item] / _TIER_PRICE[tier[session_of]])))
    carted = (view_item >= 0) & (rng.random(session_of.size) < 0.28 * fit)
    buys = rng.random(n) < 0.55
    bought = carted & buys[session_of]
    has_purchase = np.bincount(session_of[bought], minlength=n) > 0
    complement_session, comp_item, comp_ts = _complements(
        rng, starts, n_views, category, band, has_purchase, sampler
    )
    quantity = 1 + rng.geometric(0.7, size=session_of.size) - 1
    purchase_ts = starts + n_views * 60 + 120
    viewed = view_item >= 0
    drawn: list[_Drawn] = [
        (
            session_of[viewed],
            view_item[viewed],
            view_ts[viewed],
            "view",
            np.ones(int(viewed.sum())),
        ),
        (
            session_of[carted],
            view_item[carted],
            view_ts[carted] + 20,
            "add_to_cart",
            quantity[carted],
        ),
        (
            session_of[bought],
            view_item[bought],
            purchase_ts[session_of[bought]],
            "purchase",
            quantity[bought],
        ),
    ]
    ones = np.ones(comp_item.size)
    for offset, event_type in ((0, "view"), (10, "add_to_cart")):
        drawn.append((complement_session, comp_item, comp_ts + offset, event_type, ones))
    drawn.append((complement_session, comp_item, purchase_ts[complement_session], "purchase", ones))
    return drawn


def _complements(
    rng: np.random.Generator,
    starts: np.ndarray,
    n_views: np.ndarray,
    category: np.ndarray,
    band: np.ndarray,
    has_purchase: np.ndarray,
    sampler: _ItemSampler,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions with a purchase that also buy an item of the complementary category (in the
    same price band), that item and when it was viewed."""
    complement_session = np.flatnonzero(has_purchase & (rng.random(has_purchase.size) < 0.4))
    complement_category = np.array([[c[1] for c in CATEGORIES].index(c[4]) for c in CATEGORIES])
    comp_ts = starts[complement_session] + n_views[complement_session] * 60 + 30
    comp_item = sampler.draw(
        rng,
        complement_category[category[complement_session]] * 3 + band[complement_session],
        comp_ts,
    )
    ok = comp_item >= 0
    return complement_session[ok], comp_item[ok], comp_ts[ok]


def _events_frame(
    rng: np.random.Generator,
    drawn: list[_Drawn],
    n: int,
    session_users: np.ndarray,
    first_session: int,
    users: pl.DataFrame,
    items: pl.DataFrame,
) -> pl.DataFrame:
    """The drawn events of ``n`` sessions as canonical rows, each session on one platform,
    sorted by time."""
    frames = []
    item_ids = items["item_id"].to_numpy()
    prices = items["price"].to_numpy()
    user_ids = users["user_id"].to_numpy()
    countries = users["country"].to_numpy()
    platform = _PLATFORMS[rng.choice(3, size=n, p=[0.5, 0.3, 0.2])]
    for sessions, picked, ts, event_type, value in drawn:
        if sessions.size == 0:
            continue
        global_session = sessions + first_session
        frames.append(
            pl.DataFrame(
                {
                    "user_id": user_ids[session_users[sessions]],
                    "item_id": item_ids[picked],
                    "event_type": event_type,
                    "ts": (ts * 1e6).astype(np.int64),
                    "value": value.astype(np.float64),
                    "price": prices[picked],
                    "basket_id": np.char.add("O", global_session.astype(str))
                    if event_type == "purchase"
                    else None,
                    "session_id": np.char.add("S", global_session.astype(str)),
                    "platform": platform[sessions],
                    "country": countries[session_users[sessions]],
                },
                schema_overrides={"basket_id": pl.String},
            )
        )
    events = pl.concat(frames, how="vertical")
    return events.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))).sort("ts")


def _events_per_session(
    spec: ShopSpec,
    users: pl.DataFrame,
    taste_cum: np.ndarray,
    sampler: _ItemSampler,
    items: pl.DataFrame,
) -> float:
    """Measure the mean session length on a pilot draw (its own seed: the shop is unchanged)."""
    pilot = np.random.default_rng(spec.seed + 1)
    n = 50_000
    starts = spec.start.timestamp() + pilot.random(n) * spec.days * 86400
    who = pilot.integers(0, spec.n_users, n)
    frame = _sessions_chunk(pilot, starts, who, 0, users, taste_cum, sampler, items)
    return frame.height / n


def generate_shop(
    spec: ShopSpec,
    out_dir: Path,
    *,
    events_format: str = "parquet",
    on_progress: Callable[[int, int], None] | None = None,
) -> SyntheticShop:
    """Draw a shop from ``spec`` and write ``items.csv``, ``users.csv`` and the events file."""
    if events_format not in ("parquet", "csv"):
        raise ValueError(f"events_format must be parquet or csv, not {events_format!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    items = _catalogue(spec, rng)
    users, taste_cum = _users(spec, rng)
    sampler = _ItemSampler(items)

    per_session = _events_per_session(spec, users, taste_cum, sampler, items)
    activity = users["__activity"].to_numpy()

    def draw_sessions(count: int) -> tuple[np.ndarray, np.ndarray]:
        """Session start times (sorted) spread over the whole period, and their users."""
        who = rng.choice(spec.n_users, size=count, p=activity / activity.sum())
        day_fraction = np.clip(rng.normal(0.6, 0.17, count), 0.0, 0.999)
        day = rng.integers(0, spec.days, count)
        starts = spec.start.timestamp() + (day + day_fraction) * 86400
        order = np.argsort(starts, kind="stable")
        return starts[order], who[order]

    events_path = out_dir / f"events.{events_format}"
    writer: pq.ParquetWriter | None = None
    written = 0
    chunk = 250_000
    next_session = 0
    with events_path.open("wb") as handle:
        # A slight surplus of sessions; a rare shortfall is topped up by sessions spread over the
        # same period, so the log always covers the whole period and has exactly spec.events.
        for _ in range(10):
            missing = spec.events - written
            if missing <= 0:
                break
            starts, who = draw_sessions(int(missing / per_session * 1.01) + 10)
            for first in range(0, starts.size, chunk):
                frame = _sessions_chunk(
                    rng,
                    starts[first : first + chunk],
                    who[first : first + chunk],
                    next_session + first,
                    users,
                    taste_cum,
                    sampler,
                    items,
                ).head(spec.events - written)
                if events_format == "parquet":
                    table = frame.to_arrow()
                    if writer is None:
                        writer = pq.ParquetWriter(handle, table.schema, compression="zstd")
                    writer.write_table(table)
                else:
                    frame.write_csv(handle, include_header=written == 0)
                written += frame.height
                if on_progress is not None:
                    on_progress(written, spec.events)
                if written >= spec.events:
                    break
            next_session += starts.size
        if writer is not None:
            writer.close()

    items_path = out_dir / "items.csv"
    items.drop("__category", "__popularity").write_csv(items_path)
    users_path = out_dir / "users.csv"
    users.drop("__tier", "__activity").write_csv(users_path)
    return SyntheticShop(items_path, users_path, events_path, spec.n_items, spec.n_users, written)
