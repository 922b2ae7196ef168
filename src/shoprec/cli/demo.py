"""``shoprec demo``: the main job on the embedded defaults."""

from __future__ import annotations

import os
from functools import partial
from typing import Annotated

import typer
from rich.table import Table

from shoprec.cli.common import (
    WorkspaceOption,
    app,
    console,
    progress_bar,
    run,
    settings_for,
)
from shoprec.cli.data import generate, print_summary
from shoprec.cli.models import evaluate_workspace, print_results, print_validation
from shoprec.cli.serving import check_port, serve
from shoprec.data.ingest import ingest as ingest_files
from shoprec.data.lake import Lake


@app.command()
def demo(
    workspace: WorkspaceOption = None,
    events: Annotated[int, typer.Option(help="Size of the synthetic shop.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End by serving the storefront.")
    ] = True,
    port: Annotated[int, typer.Option(help="Port of the storefront.")] = 8080,
) -> None:
    """The main job on embedded defaults: generate a shop, ingest, evaluate, build, serve."""
    settings = settings_for(None, workspace)
    if serve_after:  # before minutes of work, not after them
        run(lambda: check_port("127.0.0.1", port))
    source = settings.workspace / "source"
    console.rule("1/6 generate a synthetic shop")
    generate(source, events=events, seed=seed)
    console.rule("2/6 ingest it into the lake")
    table = Table("file", "format", "rows read", "rejected", "new events", "items", "users")
    for name, fmt in (("items.csv", "csv"), ("users.csv", "csv"), ("events.parquet", "parquet")):
        with progress_bar(f"ingesting {name}"):
            load = partial(
                ingest_files,
                [source / name],
                fmt,
                workspace=settings.workspace,
                config=settings.ingest,
            )
            report = run(load)
        table.add_row(
            name,
            fmt,
            *(
                f"{n:,}"
                for n in (
                    report.rows_read,
                    report.rows_rejected,
                    report.events_added,
                    report.items,
                    report.users,
                )
            ),
        )
    console.print(table)
    console.rule("3/6 what the lake holds")
    print_summary(settings.workspace)
    from shoprec.evaluation.report import write_report
    from shoprec.models import parse_model_config
    from shoprec.pipeline.build import build as build_run

    console.rule("4/6 evaluate every model on the same split")
    models = {name: parse_model_config(c) for name, c in settings.models.items()}
    result = run(
        partial(evaluate_workspace, settings, models, k=settings.evaluation.k, tune_first=False)
    )
    print_results(result)
    folder = settings.workspace / "reports" / "demo"
    _, html_path = write_report(result, folder, title="shoprec demo: the synthetic shop")
    console.print(f"report: {html_path}", soft_wrap=True)
    console.rule("5/6 build and publish the models")
    lake = Lake(settings.workspace)
    with progress_bar("building"):
        built = run(
            partial(
                build_run,
                lake.events(),
                settings,
                items=lake.items(),
                users=lake.users(),
                evaluation=result,
            )
        )
    console.print(
        f"published run {built.run_id} (default model: {built.default_model})", soft_wrap=True
    )
    print_validation(built)
    if not serve_after:
        console.print("serve it with: shoprec serve", soft_wrap=True)
        return
    console.rule("6/6 serve the storefront and the API")
    console.print(
        f"storefront: http://127.0.0.1:{port}/  ·  operator page: http://127.0.0.1:{port}/operator"
        f"  ·  API docs: http://127.0.0.1:{port}/docs  (Ctrl-C stops)",
        soft_wrap=True,
    )
    # the password-less sign-in of the storefront, for the demo's server only (off by default)
    os.environ["SHOPREC_SERVING__DEMO_LOGIN"] = "true"
    serve(workspace=settings.workspace, port=port)
