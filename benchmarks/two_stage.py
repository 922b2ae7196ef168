"""The two-stage pipeline against the best single generator (issue: two-stage ranking).

For each data set, on one split: every generator is tuned on time-ordered folds inside the
training part (never the test part) and evaluated with and without seen items excluded; the
two-stage model then uses the tuned generators as its candidate sources and is evaluated the
same way. Target: two-stage NDCG@10 >= 1.05 x the best single generator's (best of its two
settings), on UCI Online Retail (time split at 2011-10-01) and on the synthetic shop (time split
at 80 % of the range).

Run from the repository root::

    .venv/bin/python benchmarks/two_stage.py [--shared-data ../shared/data] [--events 200000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import shared_data
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.evaluation.runner import evaluate_models
from shoprec.evaluation.splitters import Split, TimeSplit
from shoprec.evaluation.tuning import TuningConfig, tune
from shoprec.models import parse_model_config

GENERATORS = ["buy_again", "ease", "copurchase", "itemknn", "als", "content", "popular"]
TARGET = 1.05


def _compare(name: str, lake: Lake, split: Split) -> dict[str, Any]:
    items = lake.items()
    users = lake.users() if lake.users().height else None
    tuning = TuningConfig(folds=2, max_trials=12)
    tuned: dict[str, Any] = {}
    started = time.perf_counter()
    for kind in GENERATORS:
        tuned[kind] = tune(kind, split.train, tuning, items=items).best
        print(f"  tuned {kind}: {tuned[kind].model_dump(exclude={'kind'})}", flush=True)
    tuning_seconds = time.perf_counter() - started
    generators = {k: c.model_dump(mode="json") for k, c in tuned.items()}
    two_stage = parse_model_config({"kind": "two_stage", "generators": generators})
    result = evaluate_models(
        {**tuned, "two_stage": two_stage},
        split,
        items=items,
        users=users,
        exclude_seen="both",
        metrics=["ndcg", "recall", "hit_rate", "coverage"],
    )
    best_single = max(
        (r for r in result.runs if r.name != "two_stage"), key=lambda r: r.metrics["ndcg@10"]
    )
    two = max((r for r in result.runs if r.name == "two_stage"), key=lambda r: r.metrics["ndcg@10"])
    ratio = two.metrics["ndcg@10"] / best_single.metrics["ndcg@10"]
    print(f"\n## {name}\n{result.split}, {result.n_test_users:,} test users, K=10\n")
    print("| model | seen excluded | ndcg@10 | recall@10 | hit_rate@10 | coverage@10 | fit s |")
    print("|---|---|---|---|---|---|---|")
    for run in result.runs:
        m = run.metrics
        print(
            f"| {run.name} | {'yes' if run.exclude_seen else 'no'} | {m['ndcg@10']:.4f} | "
            f"{m['recall@10']:.4f} | {m['hit_rate@10']:.4f} | {m['coverage@10']:.4f} | "
            f"{run.fit_seconds:.1f} |"
        )
    print(
        f"\nbest single: {best_single.name} (seen excluded: {best_single.exclude_seen}) "
        f"{best_single.metrics['ndcg@10']:.4f}; two-stage {two.metrics['ndcg@10']:.4f}; "
        f"ratio {ratio:.3f} (target >= {TARGET})",
        flush=True,
    )
    return {
        "split": result.split,
        "tuning_seconds": tuning_seconds,
        "best_single": {
            "model": best_single.name,
            "exclude_seen": best_single.exclude_seen,
            "ndcg@10": best_single.metrics["ndcg@10"],
        },
        "two_stage": {
            "exclude_seen": two.exclude_seen,
            "ndcg@10": two.metrics["ndcg@10"],
            "fit_seconds": two.fit_seconds,
        },
        "ratio": ratio,
        "passed": ratio >= TARGET,
        "rows": [
            {"model": r.name, "exclude_seen": r.exclude_seen, **r.metrics, "fit_s": r.fit_seconds}
            for r in result.runs
        ],
        "tuned": generators,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/two-stage-results.json"))
    args = parser.parse_args()
    shared = shared_data(args.shared_data)
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory() as scratch:
        uci = Path(scratch) / "uci"
        ingest([shared / "uci-online-retail" / "online_retail.csv"], "online-retail", workspace=uci)
        lake = Lake(uci)
        split = TimeSplit(cutoff=datetime(2011, 10, 1, tzinfo=UTC)).split(lake.events())
        results["online_retail"] = _compare("UCI Online Retail", lake, split)
        shop = generate_shop(ShopSpec(events=args.events, seed=7), Path(scratch) / "shop")
        synthetic = Path(scratch) / "synthetic"
        ingest([shop.items_path, shop.users_path], "csv", workspace=synthetic)
        ingest([shop.events_path], "parquet", workspace=synthetic)
        lake = Lake(synthetic)
        split = TimeSplit(train_ratio=0.8).split(lake.events())
        results["synthetic"] = _compare(f"Synthetic shop ({args.events:,} events)", lake, split)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    passed = all(results[part]["passed"] for part in ("online_retail", "synthetic"))
    print("\nchecks:", "all passed" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
