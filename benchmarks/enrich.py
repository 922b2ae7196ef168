"""Speed of ``shoprec enrich`` with the default tfidf provider on the 49,688 Instacart products.

Cold: a workspace whose catalogue was just ingested (not timed) and that has no embeddings yet:
fitting TF-IDF + SVD, embedding every product and writing the cache. Target <= 20 s (issue 7).
Warm: the same command again, which must make zero provider calls. Each run is its own
``shoprec enrich --json`` process (interpreter start-up included); the cold runs delete
``<workspace>/embeddings`` first. Medians are reported.

Run from the repository root::

    .venv/bin/python benchmarks/enrich.py [--repeat 3] [--shared-data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import SHOPREC, clean_env, git, shared_data

TARGET_COLD_SECONDS = 20.0
PRODUCTS = 49_688


def _shoprec(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [SHOPREC, *args], capture_output=True, text=True, check=False, env=clean_env()
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"shoprec {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def _enrich(workspace: Path) -> tuple[float, dict[str, Any]]:
    elapsed, output = _shoprec(["enrich", "-w", str(workspace), "--json"])
    return elapsed, json.loads(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shared-data")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/enrich-results.json"))
    args = parser.parse_args()
    source = shared_data(args.shared_data) / "instacart-products"
    repeat = max(1, min(args.repeat, 10))
    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--", "src"))
    runs: dict[str, list[float]] = {"cold": [], "warm": []}
    enrich_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch) / "ws"
        files = [str(source / name) for name in ("products.csv", "aisles.csv", "departments.csv")]
        _shoprec(["ingest", "-f", "instacart-products", "-w", str(workspace), *files])
        for _ in range(repeat):
            shutil.rmtree(workspace / "embeddings", ignore_errors=True)
            elapsed, cold = _enrich(workspace)
            if cold["embedded"] != PRODUCTS or cold["failed"]:
                raise SystemExit(f"cold run embedded {cold['embedded']:,}, not {PRODUCTS:,}")
            runs["cold"].append(elapsed)
            enrich_seconds.append(cold["seconds"])
            elapsed, warm = _enrich(workspace)
            if warm["calls"] != 0 or warm["cached"] != PRODUCTS:
                raise SystemExit(f"warm run made {warm['calls']} calls: the cache missed")
            runs["warm"].append(elapsed)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "date": datetime.now(UTC).isoformat(),
        "commit": commit,
        "src_dirty": dirty,
        "products": PRODUCTS,
        "provider": cold["provider"],
        "dimensions": cold["dim"],
        "cold_calls": cold["calls"],
        "warm_calls": warm["calls"],
        "runs_seconds": runs,
        "median_seconds": medians,
        "cold_embed_and_write_seconds": enrich_seconds,
        "target_cold_seconds": TARGET_COLD_SECONDS,
        "passed": medians["cold"] <= TARGET_COLD_SECONDS,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0 if result["passed"] else 3


if __name__ == "__main__":
    sys.exit(main())
