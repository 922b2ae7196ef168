"""Recall of the FAISS HNSW indexes the engine searches, against exact inner-product search.

Loads the published run of ``--workspace`` (the serving benchmark's shop) as ``shoprec serve``
does (one BLAS/FAISS thread), draws ``--users`` random training users, and for each indexed
generator (ALS, content) compares the top ``--n`` items of the index with the exact top ``--n``
at several ``efSearch`` values; prints recall@n and the median time per search.

    .venv/bin/python benchmarks/index_recall.py --workspace /tmp/ssf [--users 300] [--n 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from shoprec.index import FaissIndex
from shoprec.pipeline.build import current_run
from shoprec.serving.engine import Engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/serving-shop"))
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--ef", type=int, nargs="+", default=[64, 96, 128])
    args = parser.parse_args()
    threadpool_limits(1)
    faiss.omp_set_num_threads(1)
    run_id, manifest = current_run(args.workspace)
    engine = Engine(args.workspace, run_id, manifest)
    indexes = {name: i for name, i in engine._indexes.items() if isinstance(i, FaissIndex)}
    if not indexes:
        print("the published run has no FAISS index (catalogue below the exact threshold)")
        return 1
    for name, index in indexes.items():
        generator = engine.model.generators_[name]  # type: ignore[attr-defined]
        users = np.random.default_rng(1).choice(generator.user_items_.shape[0], args.users)
        queries = generator.query_vectors(generator.user_items_[users], users)
        vectors = generator.item_vectors()
        exact = [set(np.argsort(-(vectors @ q))[: args.n].tolist()) for q in queries]
        for ef in args.ef:
            index.index.hnsw.efSearch = ef
            found, times = [], []
            for query in queries:
                started = time.perf_counter()
                items, _ = index.search(query, args.n)
                times.append((time.perf_counter() - started) * 1000)
                found.append(set(items.tolist()))
            recall = np.mean([len(a & b) / args.n for a, b in zip(exact, found, strict=True)])
            median = statistics.median(times)
            print(f"{name:10s} efSearch {ef:4d}  recall@{args.n} {recall:.3f}  {median:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
