"""The default model against each of its generators, on every shape of shop data we have.

For each data set, the events are split once (the split is never shown to shoprec), then
``shoprec.pipeline.build.build`` runs with the embedded default settings on the training part
only, as ``shoprec build --train`` would, and every model of the run recommends K = 10 items to
each test user through ``recommend()`` with its own settings, as ``shoprec recommend`` would. The
lists are scored here with this script's own NDCG@10 (binary relevance, full catalogue), not with
shoprec's metrics module.

| shape | data | split |
|---|---|---|
| purchases with repeats | UCI Online Retail | time split at 2011-10-01, test = purchases after it |
| ratings, no purchases | MovieLens 100K | random 75/25 of each user's rated items (all relevant) |
| order only, synthetic time | Amazon Beauty 5-core | leave-last-out (each user's last item) |
| views, carts, purchases | the synthetic shop (seed 7) | time split at 80 % of the range |

Run from the repository root::

    .venv/bin/python benchmarks/shapes.py [--shapes uci movielens beauty synthetic]
        [--events 200000] [--out benchmarks/shapes-results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from _common import git, shared_data
from shoprec.config import Settings
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.evaluation.splitters import LeaveLastOutSplit, RandomSplit, Split, TimeSplit
from shoprec.pipeline.build import build, load_model

K = 10


def ndcg_at_k(recs: pl.DataFrame, truth: pl.DataFrame, k: int = K) -> float:
    """Mean NDCG@k over the truth's users (binary relevance; a user without a list scores 0)."""
    relevant: dict[str, set[str]] = {}
    for user, item in truth.select("user_id", "item_id").iter_rows():
        relevant.setdefault(user, set()).add(item)
    lists: dict[str, list[str]] = {}
    for user, item in recs.sort("user_id", "rank").select("user_id", "item_id").iter_rows():
        lists.setdefault(user, []).append(item)
    total = 0.0
    for user, wanted in relevant.items():
        top = lists.get(user, [])[:k]
        dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(top) if item in wanted)
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(wanted))))
        total += dcg / ideal
    return total / len(relevant)


def _uci(shared: Path, scratch: Path) -> tuple[Lake, Split]:
    workspace = scratch / "uci-lake"
    source = shared / "uci-online-retail" / "online_retail.csv"
    ingest([source], "online-retail", workspace=workspace)
    lake = Lake(workspace)
    return lake, TimeSplit(cutoff=datetime(2011, 10, 1, tzinfo=UTC)).split(lake.events())


def _movielens(shared: Path, scratch: Path) -> tuple[Lake, Split]:
    workspace = scratch / "ml-lake"
    folder = shared / "movielens-100k"
    paths = [folder / "u.data", folder / "u.item", folder / "u.user"]
    ingest(paths, "movielens", workspace=workspace)
    lake = Lake(workspace)
    split = RandomSplit(test_fraction=0.25, test_event_types=["rating"], seed=0)
    return lake, split.split(lake.events())


def _beauty(shared: Path, scratch: Path) -> tuple[Lake, Split]:
    workspace = scratch / "beauty-lake"
    folder = shared / "amazon-5core-seq"
    paths = [folder / "Beauty.txt", folder / "Beauty_item2attributes.json"]
    ingest(paths, "amazon-seq", workspace=workspace)
    lake = Lake(workspace)
    return lake, LeaveLastOutSplit(test_event_types=["review"]).split(lake.events())


def _synthetic(events: int) -> Callable[[Path, Path], tuple[Lake, Split]]:
    def load(shared: Path, scratch: Path) -> tuple[Lake, Split]:
        shop = generate_shop(ShopSpec(events=events, seed=7), scratch / "shop")
        workspace = scratch / "synthetic-lake"
        ingest([shop.items_path, shop.users_path], "csv", workspace=workspace)
        ingest([shop.events_path], "parquet", workspace=workspace)
        lake = Lake(workspace)
        return lake, TimeSplit(train_ratio=0.8).split(lake.events())

    return load


def run_shape(name: str, lake: Lake, split: Split, scratch: Path) -> dict[str, Any]:
    settings = Settings(workspace=scratch / f"{name}-run")
    items = lake.items()
    users = lake.users()
    started = time.perf_counter()
    result = build(
        split.train,
        settings,
        items=items if items.height else None,
        users=users if users.height else None,
        source=f"benchmarks/shapes.py {name}",
    )
    build_seconds = time.perf_counter() - started
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    test_users = split.test_users
    scores: dict[str, float] = {}
    for model_name in manifest["models"]:
        model, _ = load_model(settings.workspace, model_name)
        recs = model.recommend(test_users, k=K, explain=False)
        scores[model_name] = ndcg_at_k(recs, split.truth)
    default = manifest["default_model"]
    generators = {m: s for m, s in scores.items() if m != default and m != "two_stage"}
    best = max(generators, key=lambda m: generators[m])
    row = {
        "split": split.description,
        "test_users": len(test_users),
        "train_events": split.train.height,
        "default_model": default,
        "default_ndcg@10": scores[default],
        "best_generator": best,
        "best_generator_ndcg@10": generators[best],
        "ratio": scores[default] / generators[best] if generators[best] else float("nan"),
        "ease_ndcg@10": scores.get("ease"),
        "build_seconds": build_seconds,
        "fit_seconds": {m: round(s, 2) for m, s in result.fit_seconds.items()},
        "ndcg@10": scores,
        "validation": manifest.get("validation"),
    }
    print(json.dumps({name: row}, indent=1, default=str), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data")
    parser.add_argument("--shapes", nargs="+", default=["uci", "movielens", "beauty", "synthetic"])
    parser.add_argument("--events", type=int, default=200_000, help="synthetic shop size")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/shapes-results.json"))
    args = parser.parse_args()
    shared = shared_data(args.shared_data)
    loaders: dict[str, Callable[[Path, Path], tuple[Lake, Split]]] = {
        "uci": _uci,
        "movielens": _movielens,
        "beauty": _beauty,
        "synthetic": _synthetic(args.events),
    }
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "src")),
        "shapes": {},
    }
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for name in args.shapes:
            print(f"== {name}", flush=True)
            lake, split = loaders[name](shared, scratch)
            results["shapes"][name] = run_shape(name, lake, split, scratch)
    print("\n| shape | default | NDCG@10 | best generator | NDCG@10 | ratio | EASE | build s |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for name, row in results["shapes"].items():
        print(
            f"| {name} | {row['default_model']} | {row['default_ndcg@10']:.4f} | "
            f"{row['best_generator']} | {row['best_generator_ndcg@10']:.4f} | "
            f"{row['ratio']:.3f} | {row['ease_ndcg@10'] or float('nan'):.4f} | "
            f"{row['build_seconds']:.0f} |"
        )
    args.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
