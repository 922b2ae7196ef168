"""What the fault tests share: a small built shop, ``shoprec serve`` as its own process, and a
Redis server of the test's own that it can crash and start again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from shoprec.config import load_settings
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.pipeline.build import build

SHOPREC = str(Path(sys.executable).parent / "shoprec")
API_KEY = "faults-key"
KEY = {"X-API-Key": API_KEY}
# Light models: the faults are in publishing, loading, serving and the stream, not in a model.
LIGHT_CONFIG = """\
default_model: itemknn
models:
  itemknn: {kind: itemknn}
  popular: {kind: popular}
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without ``SHOPREC_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPREC_")}
    return {**env, **extra}


@pytest.fixture(scope="session")
def built_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic shop (6,000 events) ingested and built with :data:`LIGHT_CONFIG`."""
    workspace = tmp_path_factory.mktemp("faults-shop") / "ws"
    source = workspace.parent / "source"
    generate_shop(ShopSpec(events=6_000, users=300, items=200, seed=11), source)
    for name, fmt in (("items.csv", "csv"), ("users.csv", "csv"), ("events.parquet", "parquet")):
        ingest([source / name], fmt, workspace=workspace)
    config = workspace.parent / "light.yaml"
    config.write_text(LIGHT_CONFIG)
    settings = load_settings(config, workspace=workspace)
    lake = Lake(workspace)
    build(lake.events(), settings, items=lake.items(), users=lake.users())
    return workspace


@pytest.fixture
def shop(built_shop: Path, tmp_path: Path) -> Path:
    """A copy of the built shop for one test (servers write to their workspace)."""
    workspace = tmp_path / "ws"
    shutil.copytree(built_shop, workspace)
    return workspace


@pytest.fixture
def light_config(built_shop: Path) -> Path:
    return built_shop.parent / "light.yaml"


def current(workspace: Path) -> str:
    return (workspace / "models" / "CURRENT").read_text().strip()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serving(workspace: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``shoprec serve`` on the workspace, on a free loopback port, with :data:`API_KEY`;
    ready when the block starts, stopped (killed after 30 s) when it ends."""
    port = free_port()
    log = workspace.parent / f"server-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                *(SHOPREC, "serve", "-w", str(workspace)),
                *("--host", "127.0.0.1", "--port", str(port)),
                *args,
            ],
            env=clean_env(SHOPREC_API_KEYS=API_KEY, **(env or {})),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"shoprec serve exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"shoprec serve was not ready after 120 s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


class PrivateRedis:
    """A ``redis-server`` of the test's own: a temporary folder, a free loopback port, and an
    append-only file written before every reply (``appendfsync always``), so a crash loses
    nothing it acknowledged."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port)),
                    *("--dir", str(self.folder), "--save", "", "--protected-mode", "yes"),
                    *("--appendonly", "yes", "--appendfsync", "always"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass
                except redis.ConnectionError:
                    if self.process.poll() is not None:
                        pytest.fail(f"redis-server exited with {self.process.returncode}")
                if time.monotonic() > deadline:
                    pytest.fail("redis-server did not answer within 20 s")
                time.sleep(0.05)
        finally:
            client.close()

    def crash(self) -> None:
        """SIGKILL: no shutdown, no final save; only what the append-only file holds."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A running :class:`PrivateRedis`, shut down after the test (never the shared one)."""
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("redis-server is not installed; CI must run the Redis fault test")
        pytest.skip("redis-server is not installed")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
