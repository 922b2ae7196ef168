"""A small synthetic shop, ingested and built once for the serving tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from shoprec.config import Settings, load_settings
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.pipeline.build import build

API_KEY = "test-key-1"


def make_shop(workspace: Path, *, events: int = 20_000, seed: int = 3) -> Settings:
    """Generate, ingest and build a shop in ``workspace``; returns its settings."""
    source = workspace / "source"
    generate_shop(ShopSpec(events=events, seed=seed), source)
    for name, fmt in (("items.csv", "csv"), ("users.csv", "csv"), ("events.parquet", "parquet")):
        ingest([source / name], fmt, workspace=workspace)
    settings = load_settings(workspace=workspace, api_keys=[API_KEY])
    lake = Lake(workspace)
    build(lake.events(), settings, items=lake.items(), users=lake.users())
    # a server's worker appends to the lake every 10 s by default: tests look sooner; the
    # storefront tests sign in with the demo login (off by default outside 'shoprec demo')
    quick = settings.serving.model_copy(update={"lake_flush_seconds": 0.5, "demo_login": True})
    return settings.model_copy(update={"serving": quick})


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_shop(tmp_path_factory.mktemp("shop"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
