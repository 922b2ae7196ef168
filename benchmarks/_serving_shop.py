"""The serving benchmark's shop: a synthetic shop of 100,000 items and 100,000 users, ingested
and built with ``serving-shop.yaml`` (the two-stage model without EASE; the serving engine takes
similar items from its generators), in a workspace of its own.

``prepare_shop`` runs each step as its own ``shoprec`` process (``generate``, three
``ingest``, ``build``), so the caller's memory stays small and the steps are the commands a user
would type. The recipe and the parameters are stamped in ``WORKSPACE/serving-shop.json`` at the
end; a second call with the same parameters on that workspace does nothing.

Cost on the 2-core benchmark machine (4M events, seed 7, other work running): about 11 minutes
(generate 14 s, ingest 16 s, build 10-10.5 min), peak 4.4 GB (the build), 0.8 GB on disk.

Run on its own (from the repository root)::

    .venv/bin/python benchmarks/_serving_shop.py /tmp/serving-shop --events 4000000 --seed 7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from pathlib import Path

from _common import SHOPREC, clean_env

CONFIG = Path(__file__).resolve().parent / "serving-shop.yaml"
USERS = 100_000
ITEMS = 100_000
EVENTS = 4_000_000  # 40 per user (the generator's default density): 22 distinct items each
STAMP = "serving-shop.json"


def _run(args: list[str]) -> float:
    """Run ``shoprec ARGS``; the wall time in seconds. A failure stops with its stderr."""
    started = time.perf_counter()
    done = subprocess.run(
        [SHOPREC, *args], capture_output=True, text=True, check=False, env=clean_env()
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"shoprec {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    return elapsed


def _recipe(events: int, seed: int, users: int, items: int) -> dict[str, object]:
    return {
        "events": events,
        "seed": seed,
        "users": users,
        "items": items,
        "config_sha256": hashlib.sha256(CONFIG.read_bytes()).hexdigest(),
    }


def prepare_shop(
    workspace: Path, *, events: int, seed: int, users: int = USERS, items: int = ITEMS
) -> None:
    """Generate, ingest and build the serving shop in ``workspace`` (a new or empty folder, or
    one this function prepared before with the same parameters, which is then left as it is).

    The synthetic files go to ``workspace/source``; the published run is the workspace's
    current run, with ``two_stage`` as its default model. Step timings (seconds) are written to
    ``workspace/serving-shop.json``.
    """
    workspace = Path(workspace)
    recipe = _recipe(events, seed, users, items)
    stamp = workspace / STAMP
    if stamp.is_file() and (workspace / "models" / "CURRENT").is_file():
        try:
            if json.loads(stamp.read_text()).get("recipe") == recipe:
                return
        except (OSError, json.JSONDecodeError):
            pass
    if workspace.exists() and any(workspace.iterdir()):
        raise RuntimeError(f"{workspace}: not empty and not a serving shop of these parameters")
    workspace.mkdir(parents=True, exist_ok=True)
    source = workspace / "source"
    ws = ["--workspace", str(workspace)]
    seconds: dict[str, float] = {}
    seconds["generate"] = _run(
        [
            "generate",
            str(source),
            "--events",
            str(events),
            "--users",
            str(users),
            "--items",
            str(items),
            "--seed",
            str(seed),
        ]
    )
    for name, fmt in (("items.csv", "csv"), ("users.csv", "csv"), ("events.parquet", "parquet")):
        seconds[f"ingest {name}"] = _run(["ingest", str(source / name), "--format", fmt, *ws])
    seconds["build"] = _run(["build", "--config", str(CONFIG), *ws])
    stamp.write_text(
        json.dumps({"recipe": recipe, "seconds": {k: round(v, 1) for k, v in seconds.items()}})
        + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    prepare_shop(args.workspace, events=args.events, seed=args.seed)
    print(f"prepared {args.workspace} in {time.perf_counter() - started:.0f} s")
    print((args.workspace / STAMP).read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
