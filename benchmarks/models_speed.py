"""Speed of ``shoprec build`` and ``shoprec recommend`` (every user) on UCI Online Retail, each
run as its own process, repeated; medians reported.

Targets: build of the eight candidate generators <= 60 s and recommend for all 4,372 customers
with one of them (EASE) <= 10 s (issue: candidate recommenders); the default build, which adds
the two-stage ranker, <= 3 minutes (issue: two-stage ranking). The two-stage batch recommend is
reported for information.

Run from the repository root::

    .venv/bin/python benchmarks/models_speed.py [--repeat 3] [--shared-data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from _common import shared_data

TARGETS = {"build_generators": 60.0, "recommend_ease": 10.0, "build_default": 180.0}
GENERATORS = ("popular", "copurchase", "itemknn", "ease", "als", "bpr", "content", "buy_again")


def _shoprec() -> str:
    return str(Path(sys.executable).parent / "shoprec")


def _timed(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([_shoprec(), *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"shoprec {' '.join(args)} failed:\n{done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shared-data")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/models-speed-results.json"))
    args = parser.parse_args()
    shared = shared_data(args.shared_data)
    repeat = max(1, min(args.repeat, 10))
    times: dict[str, list[float]] = {
        "build_generators": [],
        "recommend_ease": [],
        "build_default": [],
        "recommend_two_stage": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch) / "ws"
        source = shared / "uci-online-retail" / "online_retail.csv"
        _timed(["ingest", "-f", "online-retail", "-w", str(workspace), str(source)])
        users = Path(scratch) / "users.txt"
        customers = (
            pl.scan_parquet(str(workspace / "lake" / "events" / "*" / "*.parquet"))
            .select("user_id")
            .drop_nulls()
            .unique()
            .sort("user_id")
            .collect()
        )
        users.write_text("\n".join(customers["user_id"].to_list()) + "\n")
        config = Path(scratch) / "generators.yaml"
        config.write_text(
            "default_model: ease\nmodels:\n"
            + "".join(f"  {kind}: {{kind: {kind}}}\n" for kind in GENERATORS)
        )
        recommend = ["recommend", "-w", str(workspace), "--users", str(users), "--k", "10",
                     "--output", str(Path(scratch) / "recs.csv")]  # fmt: skip
        for _ in range(repeat):  # the eight generators; recommend serves EASE
            times["build_generators"].append(
                _timed(["build", "-w", str(workspace), "-c", str(config)])
            )
            times["recommend_ease"].append(_timed(recommend))
        for _ in range(repeat):  # the default run: the generators plus the two-stage model
            times["build_default"].append(_timed(["build", "-w", str(workspace)]))
            times["recommend_two_stage"].append(_timed(recommend))
        n_users = customers.height
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "date": datetime.now(UTC).isoformat(),
        "users": n_users,
        "runs": times,
        "median_seconds": medians,
        "targets_seconds": TARGETS,
        "passed": {name: medians[name] <= TARGETS[name] for name in TARGETS},
        "information": {"recommend_two_stage": medians["recommend_two_stage"]},
    }
    args.out.write_text(json.dumps(result, indent=2))
    for name, values in times.items():
        runs = ", ".join(f"{t:.1f}" for t in values)
        verdict = (
            f"target <= {TARGETS[name]:.0f} s {'PASS' if result['passed'][name] else 'FAIL'}"
            if name in TARGETS
            else "(information)"
        )
        print(f"{name:20s} median {medians[name]:6.1f} s (runs: {runs}) {verdict}")
    print(f"recommend covered {n_users:,} users")
    return 0 if all(result["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
