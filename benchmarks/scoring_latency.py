"""Latency of scoring one user's 300 candidates with features and rules, in process
(issue: two-stage ranking; target: median <= 5 ms).

The two-stage model is built on UCI Online Retail (not timed). For each of up to 500 customers,
the generators' candidates are gathered first (not timed: in serving they come from the online
store); then :meth:`CandidateScorer.score` is timed: assembling the feature matrix from arrays,
LightGBM on one thread, and the business rules.

Run from the repository root::

    .venv/bin/python benchmarks/scoring_latency.py [--users 500] [--candidates 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from _common import shared_data
from shoprec.data.dataset import Dataset
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.models import model_from_config
from shoprec.ranking.candidates import candidate_frame
from shoprec.ranking.scorer import CandidateScorer
from shoprec.ranking.two_stage import TwoStageModel

TARGET_MS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--shared-data")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/scoring-results.json"))
    args = parser.parse_args()
    shared = shared_data(args.shared_data)
    with tempfile.TemporaryDirectory() as scratch:
        ingest(
            [shared / "uci-online-retail" / "online_retail.csv"],
            "online-retail",
            workspace=Path(scratch),
        )
        dataset = Dataset.from_lake(Lake(scratch))
    started = time.perf_counter()
    model = model_from_config("two_stage").fit(dataset)
    assert isinstance(model, TwoStageModel)
    build_seconds = time.perf_counter() - started
    scorer = CandidateScorer(model)
    rng = np.random.default_rng(0)
    users = rng.choice(
        model.user_ids_.external, size=min(args.users, len(model.user_ids_)), replace=False
    ).tolist()
    per_generator = args.candidates  # then cut each user's union to exactly --candidates
    frame = candidate_frame(model.generators_, users, per_generator // 2)
    names = list(model.generators_)
    latencies: list[float] = []
    sizes: list[int] = []
    for (user,), group in frame.group_by("user_id", maintain_order=True):
        group = group.head(args.candidates)
        items = model.item_ids_.to_index(group.get_column("item_id").to_list())
        scores = group.select([f"{n}_score" for n in names]).to_numpy().astype(np.float64)
        ranks = group.select([f"{n}_rank" for n in names]).to_numpy().astype(np.float64)
        begin = time.perf_counter()
        scorer.score(str(user), items, scores, ranks, k=10)
        latencies.append((time.perf_counter() - begin) * 1000)
        sizes.append(items.size)
    median = statistics.median(latencies)
    result = {
        "date": datetime.now(UTC).isoformat(),
        "users": len(latencies),
        "candidates_per_user_median": statistics.median(sizes),
        "median_ms": median,
        "p95_ms": float(np.percentile(latencies, 95)),
        "max_ms": max(latencies),
        "two_stage_fit_seconds": build_seconds,
        "target_ms": TARGET_MS,
        "passed": median <= TARGET_MS,
        "polars": pl.__version__,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"{len(latencies)} users, {statistics.median(sizes):.0f} candidates each (median): "
        f"median {median:.2f} ms, p95 {result['p95_ms']:.2f} ms, max {result['max_ms']:.2f} ms "
        f"-> {'PASS' if result['passed'] else 'FAIL'} (target <= {TARGET_MS} ms); "
        f"two-stage fit {build_seconds:.1f} s"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
