"""MiniLM (all-MiniLM-L6-v2, ``shoprec[text]``) throughput on the CPU: texts per second on
Instacart product titles, by batch size and PyTorch thread count (issue 7: reported, no target).

The provider is loaded once (the load, imports included, is timed and reported). For each thread
count and batch size: one warm-up call on 256 titles, then ``--repeat`` calls embedding all
``--n`` titles; the median texts/s is reported. Also the latency of one title alone (the stream
worker's case), median of 50 calls at each thread count. Prints one JSON line and writes it to
``--out``.

Run from the repository root, with the text extra installed::

    .venv/bin/python benchmarks/minilm.py [--n 5000] [--repeat 3] [--batch-sizes 32 64 128]
        [--threads 1 2] [--shared-data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from _common import git, shared_data
from shoprec.embeddings.minilm import MiniLMProvider

PROVIDER_FILES = ("src/shoprec/embeddings/minilm.py", "src/shoprec/embeddings/protocol.py")


def _titles(shared: Path, n: int) -> list[str]:
    products = pl.read_csv(shared / "instacart-products" / "products.csv")
    return products["product_name"].sample(n=min(n, products.height), seed=7).to_list()


def _throughput(
    provider: MiniLMProvider, titles: list[str], batch_size: int, repeat: int
) -> dict[str, Any]:
    provider.batch_size = batch_size
    provider.embed(titles[:256])
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        vectors = provider.embed(titles)
        runs.append(time.perf_counter() - started)
        assert vectors.shape == (len(titles), provider.dim)
    median = statistics.median(runs)
    return {
        "batch_size": batch_size,
        "runs_s": [round(r, 3) for r in runs],
        "median_s": round(median, 3),
        "texts_per_s": round(len(titles) / median, 1),
    }


def _single_latency_ms(provider: MiniLMProvider, titles: list[str], calls: int = 50) -> float:
    provider.embed(titles[:1])
    times = []
    for title in titles[:calls]:
        started = time.perf_counter()
        provider.embed([title])
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shared-data")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/minilm-results.json"))
    args = parser.parse_args()
    titles = _titles(shared_data(args.shared_data), args.n)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_average_start = os.getloadavg()

    started = time.perf_counter()
    provider = MiniLMProvider(threads=args.threads[0]).load()
    load_s = time.perf_counter() - started

    import torch

    by_threads: dict[str, Any] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        by_threads[str(threads)] = {
            "throughput": [
                _throughput(provider, titles, batch_size, max(1, args.repeat))
                for batch_size in args.batch_sizes
            ],
            "single_title_ms": _single_latency_ms(provider, titles),
        }

    result = {
        "benchmark": "minilm",
        "started_at": started_at,
        "commit": git("rev-parse", "--short", "HEAD"),
        "provider_dirty": bool(git("status", "--porcelain", "--", *PROVIDER_FILES)),
        "model": provider.version,
        "texts": len(titles),
        "mean_title_chars": round(sum(map(len, titles)) / len(titles), 1),
        "repeat": args.repeat,
        "load_s": round(load_s, 2),
        "by_threads": by_threads,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_start": [round(x, 2) for x in load_average_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
    }
    line = json.dumps(result)
    print(line)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
