"""A small synthetic shop, ingested and built once for the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    # a server's worker appends to the lake every 10 s by default: tests look sooner
    quick = settings.serving.model_copy(update={"lake_flush_seconds": 0.5})
    return settings.model_copy(update={"serving": quick})


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_shop(tmp_path_factory.mktemp("shop"))
