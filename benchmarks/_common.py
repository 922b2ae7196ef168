"""What the benchmark scripts share."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def shared_data(argument: str | None) -> Path:
    """``--shared-data``, else ``$SHOPREC_SHARED_DATA``, else ``../shared/data`` beside the
    repository."""
    if argument:
        return Path(argument)
    if os.environ.get("SHOPREC_SHARED_DATA"):
        return Path(os.environ["SHOPREC_SHARED_DATA"])
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


SHOPREC = str(Path(sys.executable).parent / "shoprec")
REPO_ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    """What ``git ARGS`` prints in this repository (stripped; empty on failure)."""
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without ``SHOPREC_*`` settings (a benchmark says what it wants)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPREC_")}
    return {**env, **extra}


@contextmanager
def shoprec_process(
    args: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``shoprec ARGS`` running for the block, then stopped (killed if it will not stop)."""
    running = subprocess.Popen(
        [SHOPREC, *args],
        env=env if env is not None else clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield running
    finally:
        running.terminate()
        try:
            running.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.kill()
            running.wait(timeout=30)


def server_timing(header: str) -> dict[str, float]:
    """The parts of a ``Server-Timing`` header, e.g. ``app;dur=4.1, recommend;dur=3.2``, in
    milliseconds by name."""
    parts: dict[str, float] = {}
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                parts[name] = float(value)
    return parts
