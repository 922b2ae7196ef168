"""A damaged model run is refused at publish and at load while CURRENT keeps serving; a disk
that fills up during a build leaves CURRENT and the published run as they were."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.exceptions import LakeError
from shoprec.models.base import Recommender
from shoprec.pipeline.build import publish, verify_run

from .conftest import KEY, SHOPREC, clean_env, current, serving

runner = CliRunner()


def copy_run(workspace: Path, run_id: str) -> str:
    """A whole copy of a run under a new id (what a second build of the same data gives)."""
    copy_id = f"{run_id.rsplit('-', 1)[0]}-{uuid.uuid4().hex[:6]}"
    models = workspace / "models"
    shutil.copytree(models / run_id, models / copy_id)
    manifest = json.loads((models / copy_id / "manifest.json").read_text())
    manifest["run_id"] = copy_id
    (models / copy_id / "manifest.json").write_text(json.dumps(manifest))
    return copy_id


def _model_file(run_dir: Path) -> Path:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return run_dir / manifest["models"][manifest["default_model"]]["file"]


def _truncate(run_dir: Path) -> None:  # half-written: a copy cut short
    path = _model_file(run_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete(run_dir: Path) -> None:
    _model_file(run_dir).unlink()


def _garbage(run_dir: Path) -> None:  # same size, other bytes
    path = _model_file(run_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _no_manifest(run_dir: Path) -> None:  # a build that stopped before its manifest
    (run_dir / "manifest.json").unlink()


def _broken_manifest(run_dir: Path) -> None:
    text = (run_dir / "manifest.json").read_text()
    (run_dir / "manifest.json").write_text(text[: len(text) // 2])


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated model file": (_truncate, "bytes, its build wrote"),
    "deleted model file": (_delete, "is missing"),
    "one byte changed": (_garbage, "SHA-256 differs"),
    "no manifest": (_no_manifest, "has no manifest.json"),
    "half a manifest": (_broken_manifest, "not valid JSON"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_publish_refuses_a_damaged_run(shop: Path, damage: str) -> None:
    good = current(shop)
    bad = copy_run(shop, good)
    verify_run(shop, bad)  # whole before the damage
    harm, says = DAMAGE[damage]
    harm(shop / "models" / bad)
    result = runner.invoke(app, ["publish", bad, "-w", str(shop)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: run "), lines[0]
    assert says in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert current(shop) == good
    with pytest.raises(LakeError, match=says):
        publish(shop, bad)


def test_a_run_built_before_checksums_is_checked_by_size(shop: Path) -> None:
    legacy = copy_run(shop, current(shop))
    path = shop / "models" / legacy / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["files"]
    path.write_text(json.dumps(manifest))
    publish(shop, legacy)
    _truncate(shop / "models" / legacy)
    with pytest.raises(LakeError, match="bytes, its build wrote"):
        verify_run(shop, legacy)


def _wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.2)


def _load_failures(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("shoprec_model_load_failures_total "):
            return float(line.split()[1])
    return 0.0


def test_a_server_keeps_serving_when_current_names_a_damaged_run(shop: Path) -> None:
    good = current(shop)
    user = "U" + "0" * 6 + "1"
    with serving(shop) as server:
        client = httpx.Client(base_url=server.url, timeout=30)
        for damage in ("one byte changed", "truncated model file", "no manifest"):
            bad = copy_run(shop, good)
            DAMAGE[damage][0](shop / "models" / bad)
            failures = _load_failures(server.url)
            # as a deploy script that copies runs and writes CURRENT itself would
            (shop / "models" / "CURRENT").write_text(bad + "\n")
            _wait_for(lambda f=failures: _load_failures(server.url) > f, 15, "the load refused")
            assert client.get("/ready").json()["run_id"] == good
            answer = client.get(f"/users/{user}/recommendations")
            assert answer.status_code == 200
            assert answer.json()["run_id"] == good
            reload = client.post("/admin/reload", headers=KEY)
            assert reload.status_code == 200
            assert reload.json() == {"reloaded": False, "run_id": good}
            metrics = client.get("/metrics").text
            assert "shoprec_model_reload_failing 1.0" in metrics
            refused = client.post(f"/admin/publish/{bad}", headers=KEY)
            assert 400 <= refused.status_code < 500
            assert "refused" in refused.json()["error"]
            assert client.get("/ready").json()["run_id"] == good
        # a whole run is still taken: publishing it swaps the server over
        whole = copy_run(shop, good)
        done = subprocess.run(
            [SHOPREC, "publish", whole, "-w", str(shop)],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        _wait_for(lambda: client.get("/ready").json()["run_id"] == whole, 20, "the new run")
        assert "shoprec_model_reload_failing 0.0" in client.get("/metrics").text
        client.close()


# -- a full disk during a build ------------------------------------------------------------------
def _full_disk_on_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def save(self: Recommender[object], path: Path | str) -> None:
        Path(path).write_bytes(b"\0" * 4096)  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(Recommender, "save", save)


def _full_disk_on_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    write_text = Path.write_text

    def write(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.startswith(".manifest.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", write)


@pytest.mark.parametrize("where", ["model file", "manifest"])
def test_a_full_disk_during_a_build_leaves_current(
    shop: Path, light_config: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    good = current(shop)
    runs_before = sorted(p.name for p in (shop / "models").iterdir())
    if where == "model file":
        _full_disk_on_the_model(monkeypatch)
    else:
        _full_disk_on_the_manifest(monkeypatch)
    result = runner.invoke(app, ["build", "-w", str(shop), "-c", str(light_config)])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "no space left on the device" in errors[0]
    assert f"run {good} is still the published one" in errors[0]
    assert "Traceback" not in result.output + result.stderr
    assert current(shop) == good
    assert sorted(p.name for p in (shop / "models").iterdir()) == runs_before
    verify_run(shop, good)


@pytest.fixture
def small_disk(shop: Path, tmp_path: Path) -> Iterator[Path]:
    """``shop/models`` on a tmpfs with room for its runs and half a run more (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    models = shop / "models"
    kept = tmp_path / "models-kept"
    shutil.copytree(models, kept)

    def pages(folder: Path) -> int:
        return sum(-(-p.stat().st_size // 4096) for p in folder.rglob("*") if p.is_file())

    shutil.rmtree(models)
    models.mkdir()
    published = (kept / "CURRENT").read_text().strip()
    size_kib = 4 * (pages(kept) + pages(kept / published) // 2)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(models)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        shutil.rmtree(models)
        shutil.copytree(kept, models)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        shutil.copytree(kept, models, dirs_exist_ok=True)
        yield models
    finally:
        if subprocess.run(["umount", str(models)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(models)], check=False)


def test_a_really_full_disk_during_a_build(
    shop: Path, light_config: Path, small_disk: Path
) -> None:
    good = current(shop)
    runs_before = sorted(p.name for p in small_disk.iterdir())
    done = subprocess.run(
        [SHOPREC, "build", "-w", str(shop), "-c", str(light_config)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "no space left on the device" in errors[0]
    assert "Traceback" not in done.stderr
    assert current(shop) == good
    assert sorted(p.name for p in small_disk.iterdir()) == runs_before
    verify_run(shop, good)
