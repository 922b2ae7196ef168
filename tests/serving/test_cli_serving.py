"""The serving commands: runs, publish, score, serve's argument checks."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.config import Settings, load_settings
from shoprec.data.lake import Lake
from shoprec.pipeline.build import build, current_run

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shop with a second, lighter run (not published)."""
    folder = tmp_path_factory.mktemp("cli-serving") / "ws"
    shutil.copytree(shop.workspace, folder)
    lake = Lake(folder)
    light = load_settings(
        workspace=folder,
        models={"popular": {"kind": "popular"}, "content": {"kind": "content"}},
        default_model="popular",
    )
    build(lake.events(), light, items=lake.items(), publish_run=False)
    return folder


def test_runs_and_publish_roll_back(workspace: Path) -> None:
    first = current_run(workspace)[0]
    listed = runner.invoke(app, ["runs", "-w", str(workspace)])
    assert listed.exit_code == 0, listed.output
    ids = [
        line.split()[1] if line.startswith("*") else line.split()[0]
        for line in listed.output.splitlines()
        if line.strip()[:4].isdigit() or line.startswith("*")
    ]
    assert first in listed.output
    assert len(ids) == 2
    other = next(i for i in ids if i != first)
    published = runner.invoke(app, ["publish", other, "-w", str(workspace)])
    assert published.exit_code == 0
    assert current_run(workspace)[0] == other
    back = runner.invoke(app, ["publish", first, "-w", str(workspace)])
    assert back.exit_code == 0
    assert current_run(workspace)[0] == first
    missing = runner.invoke(app, ["publish", "no-such-run", "-w", str(workspace)])
    assert missing.exit_code == 2
    assert "no such run" in missing.stderr


def test_runs_in_an_empty_workspace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["runs", "-w", str(tmp_path)])
    assert result.exit_code == 0
    assert "no runs" in result.output


def test_score_in_batch(workspace: Path, tmp_path: Path) -> None:
    items = Lake(workspace).items().get_column("item_id").to_list()
    pairs = tmp_path / "pairs.jsonl"
    lines = [
        {"algo": "cosine-sim", "type": "item-item", "item": items[:3], "items2": items[3:8]},
        {"algo": "euclidean", "type": "item-item", "item": [items[0], "nope"], "items2": items[:2]},
    ]
    pairs.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(
        app, ["score", "--input", str(pairs), "--output", str(out), "-w", str(workspace)]
    )
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["algo"] for a in answers] == ["cosine-sim", "euclidean"]
    assert [len(r["scores"]) for r in answers[0]["results"]] == [5, 5, 5]
    assert answers[1]["results"][0]["scores"][0] == pytest.approx(0.0, abs=1e-3)
    assert answers[1]["results"][1]["status"] == "not_found"
    logged = (workspace / "logs" / "score.jsonl").read_text().splitlines()
    assert {json.loads(line)["request_id"] for line in logged} >= {a["request_id"] for a in answers}


def test_score_reports_bad_lines_by_number(workspace: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    good = {"algo": "cosine-sim", "type": "item-item", "item": ["x"], "items2": ["y"]}
    pairs.write_text(json.dumps(good) + "\n{broken\n" + json.dumps({**good, "algo": "dot"}) + "\n")
    out = tmp_path / "scores.jsonl"
    result = runner.invoke(
        app, ["score", "--input", str(pairs), "--output", str(out), "-w", str(workspace)]
    )
    assert result.exit_code == 2
    assert f"{pairs}:2:" in result.stderr
    assert f"{pairs}:3: algo" in result.stderr
    assert "2 request line(s)" in result.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written[0]["status"] == "partial"
    assert [w.get("line") for w in written[1:]] == [2, 3]
    missing = runner.invoke(
        app, ["score", "--input", str(tmp_path / "none.jsonl"), "--output", str(out)]
    )
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr


def test_serve_checks_its_arguments(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "-w", str(tmp_path), "--port", "70000"])
    assert result.exit_code == 2
    assert "--port" in result.stderr
    result = runner.invoke(app, ["serve", "-w", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 2
    assert "shared event bus" in result.stderr
    result = runner.invoke(app, ["serve", "-w", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 2
    assert "--workers" in result.stderr


def test_serve_needs_a_workspace(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    result = runner.invoke(app, ["serve", "-w", str(missing)])
    assert result.exit_code == 2, result.output
    assert "no such workspace" in result.stderr
    assert not missing.exists()  # not created silently
    result = runner.invoke(app, ["serve", "-w", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "is not a shoprec workspace" in result.stderr
    assert not (tmp_path / "lake").exists()


def test_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "-w", str(tmp_path), "--port", str(port)])
        demo = runner.invoke(app, ["demo", "-w", str(tmp_path / "demo"), "--port", str(port)])
    assert demo.exit_code == 2, demo.output
    assert "is in use" in demo.stderr
    assert not (tmp_path / "demo" / "source").exists()  # said before minutes of work
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is in use" in lines[0]
    assert "--port" in lines[0]
    assert "serving" not in result.stdout


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--bus", "memory://?bogus=1"], "event bus URL 'memory://?bogus=1': unknown option(s)"),
        (["--state", "redis://127.0.0.1:6379/0?db=3"], "unknown option(s) db for redis://"),
        (["--state", "redis://127.0.0.1:1/0"], "live state redis://127.0.0.1:1/0 (prefix"),
        (["--bus", "redis://127.0.0.1:1/0?stream=t:events"], "Redis is unreachable"),
    ],
)
def test_serve_checks_its_bus_and_state_before_it_starts(
    tmp_path: Path, option: list[str], said: str
) -> None:
    # one line and exit code 2, not a start-up traceback from every worker process
    result = runner.invoke(app, ["serve", "-w", str(tmp_path), *option])
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert "Traceback" not in result.stderr
