"""The soak benchmark's short variant: a minute of mixed load on a small shop (after 20 s of
warm-up), every check passed (no errors, the last window's p99 within 1.5 x the first's, RSS
growth within 5 %). About 100 s: 20 s to build the shop, 80 s of load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import clean_env

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_a_minute_of_mixed_load(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [
        *(sys.executable, str(SOAK), "--workdir", str(tmp_path)),
        *("--events", "10000", "--users", "500", "--items", "300"),
        *("--rate", "40", "--warmup", "20", "--duration", "60", "--window", "30"),
        *("--out", str(out)),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=clean_env(), timeout=400, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads(out.read_text())
    assert summary["passed"]
    assert summary["requests"] == 40 * 80
    assert summary["errors"] == 0
    windows = summary["windows"]
    assert len(windows) == 2
    assert all(row["routes"][route]["requests"] > 0 for row in windows for route in row["routes"])
    assert summary["rss_mb"]["end"] > 0
