"""Model commands: evaluate, tune, build, recommend."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import polars as pl
import typer
from rich import box
from rich.table import Table

from shoprec.cli.common import (
    ConfigOption,
    WorkspaceOption,
    app,
    console,
    errors,
    progress_bar,
    run,
    settings_for,
)
from shoprec.data.lake import Lake
from shoprec.exceptions import ConfigError, DataError, ShoprecError

if TYPE_CHECKING:
    from shoprec.config import Settings
    from shoprec.evaluation.runner import EvaluationResult
    from shoprec.models import ModelConfig
    from shoprec.pipeline.build import BuildResult

# The models, the evaluation and matplotlib load inside the commands that use them, so that
# 'shoprec ingest' and '--help' start quickly.

_SHOWN = {  # metric -> short column header
    "ndcg": "ndcg", "recall": "recall", "precision": "prec", "map": "map", "hit_rate": "hit",
    "coverage": "cover", "novelty": "novel", "price_tier_fit": "price",
}  # fmt: skip

ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="Only these models (names from the config); repeatable."),
]


def _check_k(k: int) -> None:
    if k <= 0:
        raise ShoprecError(f"--k must be a positive number of items, not {k}")


def _chosen_models(settings: Settings, names: list[str] | None) -> dict[str, ModelConfig]:
    from shoprec.models import parse_model_config

    configs = {name: parse_model_config(c) for name, c in settings.models.items()}
    if not names:
        return configs
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise ConfigError(
            f"unknown model {unknown[0]!r}; the config names {', '.join(configs) or 'none'}"
        )
    return {n: configs[n] for n in names}


def print_results(result: EvaluationResult) -> None:
    table = Table(
        title=f"{result.split} · {result.n_test_users:,} test users · metrics @{result.k}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("model", no_wrap=True)
    table.add_column("excl", no_wrap=True)
    shown = [m for m in _SHOWN if any(f"{m}@{result.k}" in r.metrics for r in result.runs)]
    for name in shown:
        table.add_column(_SHOWN[name], justify="right", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    for run_ in result.runs:
        values = [run_.metrics.get(f"{m}@{result.k}", math.nan) for m in shown]
        table.add_row(
            run_.name,
            "yes" if run_.exclude_seen else "no",
            *("-" if math.isnan(v) else f"{v:.2f}" if v >= 10 else f"{v:.3f}" for v in values),
            f"{run_.fit_seconds:.1f}",
        )
    console.print(table)


def evaluate_workspace(
    settings: Settings, models: dict[str, ModelConfig], *, k: int, tune_first: bool
) -> EvaluationResult:
    """:func:`shoprec.pipeline.evaluate.evaluate_lake` with a progress line."""
    from shoprec.pipeline.evaluate import evaluate_lake

    with progress_bar("evaluating") as bar:
        return evaluate_lake(settings, models, k=k, tune_first=tune_first, on_step=bar.say)


@app.command()
def evaluate(
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    k: Annotated[int | None, typer.Option(help="Cut-off K (default from the config: 10).")] = None,
    tune_first: Annotated[
        bool | None, typer.Option("--tune/--no-tune", help="Tune each model on folds first.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Folder for metrics.json and report.html (default <workspace>/reports/<time>)."
        ),
    ] = None,
) -> None:
    """Evaluate every configured model on the same split: a table, metrics.json, report.html."""
    settings = settings_for(config, workspace)

    def body() -> None:
        from shoprec.evaluation.report import write_report

        chosen_k = settings.evaluation.k if k is None else k
        _check_k(chosen_k)
        models = _chosen_models(settings, model)
        do_tune = settings.evaluation.tune if tune_first is None else tune_first
        result = evaluate_workspace(settings, models, k=chosen_k, tune_first=do_tune)
        print_results(result)
        folder = output or settings.workspace / "reports" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
        metrics_path, html_path = write_report(result, folder)
        console.print(f"metrics: {metrics_path}\nreport:  {html_path}", soft_wrap=True)

    run(body)


@app.command(name="tune")
def tune_command(
    model: Annotated[str, typer.Option("--model", "-m", help="The model to tune (a config name).")],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Search a model's hyperparameters on time-ordered folds of the training part."""
    settings = settings_for(config, workspace)

    def body() -> None:
        from shoprec.evaluation.splitters import make_split, parse_split_config
        from shoprec.evaluation.tuning import TuningConfig, tune
        from shoprec.pipeline.evaluate import lake_data

        base = _chosen_models(settings, [model])[model]
        data = lake_data(settings)
        events, items = data.events, data.items
        split = make_split(parse_split_config(settings.evaluation.split), events)
        tuning = TuningConfig.model_validate(settings.evaluation.tuning)
        table = Table(title=f"tuning {model} on {tuning.folds} fold(s), {tuning.metric}")
        table.add_column("parameters")
        table.add_column(tuning.metric, justify="right")

        def show(params: dict[str, Any], score: float) -> None:
            table.add_row(json.dumps(params), f"{score:.4f}")

        with progress_bar(f"tuning {model}"):
            result = tune(
                base,
                split.train,
                tuning,
                items=items,
                weights=settings.event_weights,
                on_trial=show,
            )
        console.print(table)
        console.print(f"best ({result.best_score:.4f}, {result.seconds:.1f} s):")
        console.print_json(json.dumps(result.best.model_dump(mode="json")))

    run(body)


@app.command()
def build(
    train: Annotated[
        Path | None,
        typer.Option(
            help="Canonical events (CSV or Parquet) to train on instead of the workspace lake."
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Train the configured models and publish them as the current run."""
    settings = settings_for(config, workspace)

    def body() -> None:
        from shoprec.data.ingest import read_events
        from shoprec.pipeline.build import build as build_run
        from shoprec.pipeline.evaluate import lake_data

        if train is not None:
            fmt = "parquet" if train.suffix.lower() in (".parquet", ".pq") else "csv"
            ingest_config = settings.ingest.model_copy(update={"table": "events"})
            events, _, report = read_events([train], fmt, config=ingest_config)
            if report.rows_rejected:
                first = report.by_reason()[0]
                errors.print(
                    f"[yellow]warning:[/] {report.rows_rejected:,} rows of {train} rejected "
                    f"(first: {first.reason} at line {first.first_line})",
                    highlight=False,
                )
            lake = Lake(settings.workspace)
            items = lake.items() if lake.items_path.exists() else None
            users = lake.users() if lake.users_path.exists() else None
            source = str(train)
        else:
            data = lake_data(settings)
            events, items, users, source = data.events, data.items, data.users, "lake"
        with progress_bar("building") as bar:
            result = build_run(
                events,
                settings,
                items=items,
                users=users,
                source=source,
                on_model=lambda name: bar.say(f"fitting {name}"),
            )
        table = Table(title=f"run {result.run_id} (published)")
        table.add_column("model")
        table.add_column("fit s", justify="right")
        for name, seconds in result.fit_seconds.items():
            marker = " (default)" if name == result.default_model else ""
            table.add_row(name + marker, f"{seconds:.2f}")
        console.print(table)
        print_validation(result)

    run(body)


def print_validation(result: BuildResult) -> None:
    """The default model's validation gate: what it learned from, each scorer's NDCG on the
    validation users, what it serves and why; warnings in yellow."""
    gate = result.validation
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if not gate:
        console.print(f"default model: {result.default_model}", soft_wrap=True)
        return
    labels, examples = gate.get("labels") or {}, gate.get("examples") or {}
    console.print(
        f"labels: {', '.join(labels.get('event_types') or []) or 'none'} ({labels.get('why')})",
        soft_wrap=True,
        highlight=False,
    )
    console.print(
        f"training examples: {examples.get('scheme')} ({examples.get('why')})",
        soft_wrap=True,
        highlight=False,
    )
    if gate["table"]:
        first = gate["table"][0]
        table = Table(
            title=f"validation: {first['users']:,} users whose labels no model saw", box=box.SIMPLE
        )
        table.add_column("scorer")
        table.add_column(f"NDCG@{first['k']}", justify="right")
        table.add_column(f"recall@{first['k']}", justify="right")
        for row in gate["table"]:
            marker = " (served)" if row["scorer"] == gate["serves"] else ""
            table.add_row(row["scorer"] + marker, f"{row['ndcg']:.4f}", f"{row['recall']:.4f}")
        console.print(table)
    console.print(
        f"published: {result.default_model} serves its {gate['serves']} ({gate['why']})",
        soft_wrap=True,
        highlight=False,
    )


def _read_users(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the users file: {exc.strerror or exc}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and "," in lines[0]:
        frame = pl.read_csv(path, infer_schema=False)
        if "user_id" not in frame.columns:
            raise DataError(f"{path}: a CSV users file needs a user_id column")
        return frame.get_column("user_id").drop_nulls().to_list()
    if lines and lines[0] == "user_id":
        lines = lines[1:]
    if not lines:
        raise DataError(f"{path}: no user ids in the users file")
    return lines


@app.command()
def recommend(
    users: Annotated[Path, typer.Option(help="User ids: one per line, or a CSV with user_id.")],
    output: Annotated[Path, typer.Option(help="CSV to write: user_id, rank, item_id, score.")],
    k: Annotated[int, typer.Option(help="Items per user.")] = 10,
    model: Annotated[
        str | None,
        typer.Option(help="A model of the current run (default: the run's default model)."),
    ] = None,
    exclude_seen: Annotated[
        bool | None,
        typer.Option("--exclude-seen/--include-seen", help="Override the model's setting."),
    ] = None,
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
) -> None:
    """Batch top-K recommendations from the current run, for scoring outside shoprec."""
    settings = settings_for(config, workspace)

    def body() -> None:
        from shoprec.pipeline.build import load_model

        _check_k(k)
        ids = _read_users(users)
        recommender, name = load_model(settings.workspace, model)
        with progress_bar(f"recommending for {len(ids):,} users with {name}"):
            # The CSV carries no reasons: skip explaining (the slowest part after scoring).
            recs = recommender.recommend(ids, k=k, exclude_seen=exclude_seen, explain=False)
        output.parent.mkdir(parents=True, exist_ok=True)
        recs.select("user_id", "rank", "item_id", "score").write_csv(output)
        known = sum(recommender.user_ids_.to_index(ids) >= 0)
        console.print(
            f"wrote {recs.height:,} rows for {len(ids):,} users ({len(ids) - known:,} unknown "
            f"to the model: popular items) with {name} to {output}"
        )

    run(body)
