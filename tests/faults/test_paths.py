"""A run id or a file name read from a command line, a request, ``CURRENT`` or a manifest never
leads outside the workspace's runs (SECURITY.md, "What leaves the server")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.exceptions import LakeError
from shoprec.files import inside
from shoprec.pipeline.build import current_run, list_runs, load_model, verify_run
from shoprec.serving.storefront import _report_path

from .conftest import current
from .test_runs import copy_run

runner = CliRunner()

NOT_RUN_IDS = ["../outside", "..", "a/b", ".hidden", "/etc", "run\x01", "back\\slash", "x" * 201]


@pytest.mark.parametrize("run_id", NOT_RUN_IDS)
def test_publish_takes_only_a_run_id(shop: Path, run_id: str) -> None:
    good = current(shop)
    result = runner.invoke(app, ["publish", run_id, "-w", str(shop)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is not a run id" in lines[0], lines[0]
    assert current(shop) == good
    with pytest.raises(LakeError, match="is not a run id"):
        verify_run(shop, run_id)


def _outside_copy(shop: Path, run_id: str) -> tuple[Path, str]:
    """The run's default model file copied beside the workspace, and its name in the manifest."""
    manifest = json.loads((shop / "models" / run_id / "manifest.json").read_text())
    name = manifest["models"][manifest["default_model"]]["file"]
    outside = shop.parent / f"elsewhere-{name}"
    shutil.copyfile(shop / "models" / run_id / name, outside)
    return outside, name


def _edit_manifest(run_dir: Path, change: dict[str, str]) -> None:
    """Point the manifest's model files (and their recorded checksums) at other names."""
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["models"].values():
        entry["file"] = change.get(entry["file"], entry["file"])
    manifest["files"] = {change.get(name, name): value for name, value in manifest["files"].items()}
    path.write_text(json.dumps(manifest))


def test_a_manifest_cannot_name_a_file_outside_its_run(shop: Path) -> None:
    good = current(shop)
    bad = copy_run(shop, good)
    outside, name = _outside_copy(shop, bad)
    _edit_manifest(shop / "models" / bad, {name: f"../../../{outside.name}"})
    with pytest.raises(LakeError, match="outside the run"):
        verify_run(shop, bad)
    result = runner.invoke(app, ["publish", bad, "-w", str(shop)])
    assert result.exit_code == 2
    assert "outside the run" in result.stderr
    assert current(shop) == good


def test_a_link_out_of_the_run_is_refused(shop: Path) -> None:
    bad = copy_run(shop, current(shop))
    outside, name = _outside_copy(shop, bad)
    target = shop / "models" / bad / name
    target.unlink()
    target.symlink_to(outside)  # the same bytes, so only the link gives it away
    with pytest.raises(LakeError, match="through a link"):
        verify_run(shop, bad)


def test_current_naming_a_path_is_refused(shop: Path) -> None:
    good = current(shop)
    elsewhere = shop.parent / "elsewhere-run"
    shutil.copytree(shop / "models" / good, elsewhere)  # a whole run, outside the workspace
    (shop / "models" / "CURRENT").write_text("../../elsewhere-run\n")
    with pytest.raises(LakeError, match="is not a run id"):
        current_run(shop)
    with pytest.raises(LakeError, match="is not a run id"):
        load_model(shop)
    result = runner.invoke(app, ["runs", "-w", str(shop)])
    assert "Traceback" not in result.output


def test_runs_are_listed_by_their_folder_not_what_the_manifest_says(shop: Path) -> None:
    run_id = current(shop)
    path = shop / "models" / run_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["run_id"] = "../../elsewhere"
    path.write_text(json.dumps(manifest))
    assert [run["run_id"] for run in list_runs(shop)] == [run_id]
    assert _report_path(shop, "../../elsewhere") is None


@pytest.mark.parametrize(
    ("name", "says"),
    [("", "not a file name"), ("a\x00b", "not a file name"), ("/etc/passwd", "leads outside")],
)
def test_inside_refuses_names_that_are_not_inside(tmp_path: Path, name: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        inside(tmp_path, name)
    assert inside(tmp_path, "a/b.npz") == tmp_path / "a" / "b.npz"
