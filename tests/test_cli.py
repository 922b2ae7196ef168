from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.data.lake import Lake
from shoprec.pipeline.build import current_run

runner = CliRunner()


@pytest.mark.parametrize(
    "command", [[], ["ingest"], ["formats"], ["generate"], ["summary"], ["demo"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_ingest_reports_rejects(fixtures: Path, workspace: Path) -> None:
    result = runner.invoke(
        app,
        [
            "ingest",
            "--format",
            "csv",
            "--workspace",
            str(workspace),
            str(fixtures / "events_bad.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rows rejected" in result.output
    assert "ts is not a timestamp" in result.output
    assert "events_bad.csv:5" in result.output


def test_ingest_json_report(fixtures: Path, workspace: Path) -> None:
    result = runner.invoke(
        app,
        [
            "ingest",
            "-f",
            "ab-events",
            "-w",
            str(workspace),
            "--json",
            str(fixtures / "ab_events.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_read"] == 20
    assert report["events_added"] == 23


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xlsx", "x.csv"], "error: unknown format 'xlsx'"),
        (["--format", "csv", "missing.csv"], "missing.csv: file not found"),
    ],
)
def test_bad_ingest_is_one_line_and_exit_2(args: list[str], message: str, workspace: Path) -> None:
    result = runner.invoke(app, ["ingest", "--workspace", str(workspace), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_config_exits_2(tmp_path: Path, fixtures: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("event_weights: 3\n")
    result = runner.invoke(
        app, ["ingest", "-f", "csv", "--config", str(config), str(fixtures / "events_bad.csv")]
    )
    assert result.exit_code == 2
    assert "bad.yaml: event_weights" in result.stderr


def test_generate_rejects_a_too_small_shop(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", str(tmp_path), "--events", "10"])
    assert result.exit_code == 2
    assert "events" in result.stderr


def test_summary_of_a_missing_workspace(tmp_path: Path) -> None:
    result = runner.invoke(app, ["summary", "--workspace", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no lake here" in result.stderr


def test_demo_generates_ingests_and_summarises(workspace: Path) -> None:
    result = runner.invoke(
        app, ["demo", "--workspace", str(workspace), "--events", "5000", "--no-serve"]
    )
    assert result.exit_code == 0, result.output
    assert "what the lake holds" in result.output
    assert Lake(workspace).events().height == 5_000
    again = runner.invoke(
        app, ["demo", "--workspace", str(workspace), "--events", "5000", "--no-serve"]
    )
    assert again.exit_code == 0
    assert Lake(workspace).events().height == 5_000  # the same seed adds nothing new
    run_id, manifest = current_run(workspace)
    assert manifest["metrics"]["two_stage"]["ndcg@10"] >= 0  # the evaluation went into the run
    assert (workspace / "models" / run_id / "report" / "report.html").is_file()
