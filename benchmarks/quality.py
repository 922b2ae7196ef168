"""Offline quality of every candidate generator on real data (issue: candidate recommenders).

Two protocols, each on one split shared by all models:

* MovieLens 100K — random 75/25 split of each user's rated items, every rating relevant,
  K = 10, seen items excluded. Targets: EASE NDCG@10 >= 0.45, ALS >= 0.40.
* UCI Online Retail — train on purchases before 2011-10-01; the test is the items each user
  with training history bought from then on (repeat purchases included); each model with and
  without seen items excluded. Target: every personalised model beats popularity on NDCG@10
  (with the model's own exclude-seen setting, and with seen items kept). Popularity is the
  global baseline; a time-decayed "trending" popularity is reported beside it, for information.

By default each personalised model's hyperparameters are first searched on time-ordered folds
inside the training part only (``--no-tune`` skips it); the test part is never used for
tuning. The two popularity baselines are not tuned.

Run from the repository root::

    .venv/bin/python benchmarks/quality.py [--shared-data ../shared/data] [--no-tune]
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

import polars as pl

from _common import shared_data
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.evaluation.runner import EvaluationResult, evaluate_models
from shoprec.evaluation.splitters import RandomSplit, Split, TimeSplit
from shoprec.evaluation.tuning import TuningConfig, tune
from shoprec.models import ModelConfig, parse_model_config

BASELINES = {"popular": {"kind": "popular"}, "trending": {"kind": "popular", "mode": "trending"}}
PERSONAL = ["copurchase", "itemknn", "ease", "als", "bpr", "content", "buy_again"]
METRICS = ["ndcg", "recall", "precision", "map", "hit_rate", "coverage", "novelty"]


def _tuned(
    split: Split, items: pl.DataFrame, test_types: list[str], enabled: bool
) -> tuple[dict[str, ModelConfig], dict[str, float]]:
    configs = {name: parse_model_config(config) for name, config in BASELINES.items()}
    configs |= {name: parse_model_config(name) for name in PERSONAL}
    seconds: dict[str, float] = {}
    if not enabled:
        return configs, seconds
    tuning = TuningConfig(test_event_types=test_types, folds=2, max_trials=12)
    for name in PERSONAL:  # the baselines stay as they are
        config = configs[name]
        started = time.perf_counter()
        configs[name] = tune(config, split.train, tuning, items=items).best
        seconds[name] = time.perf_counter() - started
        print(f"  tuned {name}: {configs[name].model_dump(exclude={'kind'})}", flush=True)
    return configs, seconds


def _rows(result: EvaluationResult) -> list[dict[str, Any]]:
    return [
        {
            "model": r.name,
            "exclude_seen": r.exclude_seen,
            **r.metrics,
            "fit_s": round(r.fit_seconds, 2),
            "config": r.config,
        }
        for r in result.runs
    ]


def _print(title: str, result: EvaluationResult) -> None:
    print(
        f"\n## {title}\n{result.split}, {result.n_test_users:,} test users, "
        f"{result.n_items:,} items, K={result.k}\n"
    )
    names = [f"{m}@{result.k}" for m in METRICS]
    print("| model | seen excluded | " + " | ".join(names) + " | fit s |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for run in result.runs:
        values = " | ".join(f"{run.metrics[n]:.4f}" for n in names)
        print(
            f"| {run.name} | {'yes' if run.exclude_seen else 'no'} | {values} | "
            f"{run.fit_seconds:.1f} |"
        )


def movielens(shared: Path, workspace: Path, do_tune: bool) -> dict[str, Any]:
    folder = shared / "movielens-100k"
    ingest([folder / "u.data", folder / "u.item"], "movielens", workspace=workspace)
    lake = Lake(workspace)
    split = RandomSplit(test_event_types=["rating"], test_fraction=0.25, seed=0).split(
        lake.events()
    )
    configs, tuning_seconds = _tuned(split, lake.items(), ["rating"], do_tune)
    result = evaluate_models(
        configs, split, items=lake.items(), exclude_seen="exclude", metrics=METRICS
    )
    _print("MovieLens 100K", result)
    ndcg = {r.name: r.metrics["ndcg@10"] for r in result.runs}
    checks = {"ease_ndcg10>=0.45": ndcg["ease"] >= 0.45, "als_ndcg10>=0.40": ndcg["als"] >= 0.40}
    return {"rows": _rows(result), "tuning_seconds": tuning_seconds, "checks": checks}


def online_retail(shared: Path, workspace: Path, do_tune: bool) -> dict[str, Any]:
    ingest(
        [shared / "uci-online-retail" / "online_retail.csv"], "online-retail", workspace=workspace
    )
    lake = Lake(workspace)
    split = TimeSplit(cutoff=datetime(2011, 10, 1, tzinfo=UTC)).split(lake.events())
    configs, tuning_seconds = _tuned(split, lake.items(), ["purchase"], do_tune)
    result = evaluate_models(
        configs, split, items=lake.items(), exclude_seen="both", metrics=METRICS
    )
    _print("UCI Online Retail", result)
    ndcg = {(r.name, r.exclude_seen): r.metrics["ndcg@10"] for r in result.runs}
    checks: dict[str, bool] = {}
    against_trending: dict[str, bool] = {}
    for name in PERSONAL:
        own = configs[name].exclude_seen
        checks[f"{name}>popular(own setting)"] = ndcg[(name, own)] > ndcg[("popular", own)]
        checks[f"{name}>popular(seen kept)"] = ndcg[(name, False)] > ndcg[("popular", False)]
        for kept in (True, False):
            label = f"{name}>trending({'seen excluded' if kept else 'seen kept'})"
            against_trending[label] = ndcg[(name, kept)] > ndcg[("trending", kept)]
    return {
        "rows": _rows(result),
        "tuning_seconds": tuning_seconds,
        "checks": checks,
        "information_only": against_trending,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data")
    parser.add_argument("--no-tune", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/quality-results.json"))
    args = parser.parse_args()
    shared = shared_data(args.shared_data)
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "tuned": not args.no_tune}
    with tempfile.TemporaryDirectory() as scratch:
        results["movielens"] = movielens(shared, Path(scratch) / "ml", not args.no_tune)
        results["online_retail"] = online_retail(shared, Path(scratch) / "uci", not args.no_tune)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    failed = [
        name
        for part in ("movielens", "online_retail")
        for name, ok in results[part]["checks"].items()
        if not ok
    ]
    print("\nchecks:", "all passed" if not failed else "FAILED " + ", ".join(failed))
    behind = [n for n, ok in results["online_retail"]["information_only"].items() if not ok]
    print("not ahead of trending popularity:", ", ".join(behind) or "none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
