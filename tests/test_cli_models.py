from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.pipeline.build import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    made = generate_shop(ShopSpec(events=8_000, seed=2), folder / "source")
    ingest([made.items_path, made.users_path], "csv", workspace=folder / "ws")
    ingest([made.events_path], "parquet", workspace=folder / "ws")
    return folder / "ws"


def one_line_error(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_evaluate_build_recommend(workspace: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "-w",
            str(workspace),
            "-m",
            "popular",
            "-m",
            "ease",
            "--output",
            str(tmp_path / "report"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ndcg" in result.output
    assert (tmp_path / "report" / "report.html").is_file()
    built = runner.invoke(app, ["build", "-w", str(workspace)])
    assert built.exit_code == 0, built.output
    served, name = load_model(workspace)
    assert name == "two_stage"
    # what the default learned from, its validation table and what it serves, and why
    assert "labels: purchase (" in built.output
    scheme = served.scheme_.scheme  # type: ignore[attr-defined]
    assert f"training examples: {scheme} (" in built.output
    assert "validation:" in built.output
    assert f"{served.scorer_choice} (served)" in built.output  # type: ignore[attr-defined]
    assert f"published: two_stage serves its {served.scorer_choice} (" in built.output  # type: ignore[attr-defined]
    assert "distance_km" in served.feature_names_  # the user table reached the build
    users = tmp_path / "users.txt"
    known = Lake(workspace).events()["user_id"].unique().sort().head(2).to_list()
    users.write_text("user_id\n" + "\n".join(known) + "\nsomeone-new\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(
        app,
        [
            "recommend",
            "-w",
            str(workspace),
            "--users",
            str(users),
            "--k",
            "4",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    recs = pl.read_csv(out)
    assert recs.columns == ["user_id", "rank", "item_id", "score"]
    assert recs.height == 12
    assert "1 unknown to the model" in result.output


def test_build_from_a_train_file(workspace: Path, tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text(
        "user_id,item_id,event_type,ts,value\n"
        "a,P000001,purchase,2025-01-01,1\nb,P000001,purchase,2025-01-02,1\n"
        "b,P000002,purchase,2025-01-02,1\nc,P000003,view,not a date,\n"
    )
    result = runner.invoke(app, ["build", "-w", str(tmp_path / "ws"), "--train", str(train)])
    assert result.exit_code == 0, result.output
    assert "1 rows of" in result.stderr
    assert "published: two_stage serves its fusion" in result.output
    # two buyers are too few to learn from: the build says so
    assert "warning: two_stage: ranker not used: " in result.stderr


def test_bad_inputs_are_one_line(workspace: Path, tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("U0000001\n")
    out = str(tmp_path / "r.csv")
    one_line_error(
        ["recommend", "-w", str(workspace), "--users", str(users), "--k", "0", "--output", out],
        "--k must be a positive number of items, not 0",
    )
    one_line_error(["evaluate", "-w", str(workspace), "--k", "-1"], "--k must be a positive")
    one_line_error(["evaluate", "-w", str(workspace), "-m", "magic"], "unknown model 'magic'")
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  ease: {kind: ease, lambda: 3}\n")
    one_line_error(["evaluate", "-w", str(workspace), "-c", str(config)], "lambda: Extra inputs")
    config.write_text("evaluation:\n  colour: red\n")
    one_line_error(
        ["evaluate", "-w", str(workspace), "-c", str(config)], "evaluation.colour: Extra inputs"
    )
    config.write_text("evaluation:\n  split: {kind: time, cutoff: 2030-01-01}\n")
    one_line_error(["evaluate", "-w", str(workspace), "-c", str(config)], "leaves no test users")
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,event_type,ts\n")
    one_line_error(
        ["build", "-w", str(tmp_path / "ws2"), "--train", str(empty)], "training events are empty"
    )
    one_line_error(["evaluate", "-w", str(tmp_path / "nothing")], "holds no events")
