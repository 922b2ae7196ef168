"""Hot reload: publishing a run while a client loops on requests fails none of them."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx

from shoprec.config import Settings, load_settings
from shoprec.data.lake import Lake
from shoprec.pipeline.build import build, current_run, publish
from shoprec.serving.app import create_app
from tests.serving.conftest import running_server


def test_publishing_a_run_swaps_without_failing_a_request(shop: Settings, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(shop.workspace, workspace)
    settings = load_settings(workspace=workspace)
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"reload_seconds": 0.05})}
    )
    first = current_run(workspace)[0]
    lake = Lake(workspace)
    light = load_settings(
        workspace=workspace,
        models={"popular": {"kind": "popular"}, "copurchase": {"kind": "copurchase"}},
        default_model="popular",
    )
    second = build(lake.events(), light, items=lake.items(), publish_run=False).run_id
    assert current_run(workspace)[0] == first

    statuses: list[int] = []
    runs: list[str] = []
    with (
        running_server(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        publisher = threading.Timer(0.5, publish, args=(workspace, second))
        publisher.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and runs.count(second) < 50:
            response = client.get("/users/U0000001/recommendations", params={"k": 5})
            statuses.append(response.status_code)
            if response.status_code == 200:
                runs.append(response.json()["run_id"])
        publisher.join()
    failed = len(statuses) - statuses.count(200)
    assert statuses
    assert failed == 0, f"{failed} of {len(statuses)} requests failed: {set(statuses)}"
    assert runs[0] == first
    assert runs[-1] == second
    switch = runs.index(second)
    assert switch > 0
    assert set(runs[switch:]) == {second}
