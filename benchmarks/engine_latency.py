"""In-process cost of one recommendation request on the serving shop, by part (no HTTP).

Loads the published run of ``--workspace`` (the serving benchmark's shop) into an
:class:`~shoprec.serving.engine.Engine` with one BLAS/FAISS thread, as ``shoprec serve`` does,
then for ``--users`` random known users times each generator's candidate step and the whole
``Engine.recommend`` (k = 10). Prints medians in milliseconds.

    .venv/bin/python benchmarks/engine_latency.py --workspace /tmp/ssf [--users 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from shoprec.pipeline.build import current_run
from shoprec.ranking.two_stage import TwoStageModel
from shoprec.serving.engine import Engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/serving-shop"))
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    threadpool_limits(1)
    faiss.omp_set_num_threads(1)
    run_id, manifest = current_run(args.workspace)
    engine = Engine(args.workspace, run_id, manifest)
    model = engine.model
    if not isinstance(model, TwoStageModel):
        print(f"the published run serves {model.config.kind}, not two_stage")
        return 1
    users = np.random.default_rng(0).choice(model.user_ids_.external, args.users).tolist()
    counts = model._candidate_counts()
    times: dict[str, list[float]] = {}

    def timed(part: str, call: Callable[..., Any], *arguments: Any) -> None:
        started = time.perf_counter()
        call(*arguments)
        times.setdefault(part, []).append((time.perf_counter() - started) * 1000)

    for user in users:
        index = np.array([model.user_ids_.to_index([user])[0]])
        row = engine._row(model, int(index[0]), [])
        assert engine.pipeline is not None
        for name, generator in model.generators_.items():
            timed(
                f"candidates: {name}",
                engine.pipeline._best,
                *(name, generator, row, index, counts[name]),
            )
        timed("recommend (all)", engine.recommend, user, 10)
    print(f"run {run_id}: {len(users)} users, medians")
    for part, values in times.items():
        print(f"  {part:<28} {statistics.median(values):7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
