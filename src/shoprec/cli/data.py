"""Data commands: ingest, formats, generate, summary."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
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
from shoprec.data.formats import adapter_names
from shoprec.data.ingest import ingest as ingest_files
from shoprec.data.report import LoadReport
from shoprec.data.summary import lake_summary
from shoprec.data.synthetic import ShopSpec, generate_shop


def _print_report(report: LoadReport) -> None:
    table = Table(title=f"ingest --format {report.format}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("rows read", report.rows_read),
        ("rows kept", report.rows_kept),
        ("rows rejected", report.rows_rejected),
        ("events read", report.events_read),
        ("events added to the lake", report.events_added),
        ("events already in the lake", report.events_already_in_lake),
        ("items upserted", report.items),
        ("users upserted", report.users),
    ):
        table.add_row(label, f"{value:,}")
    console.print(table)
    reasons = report.by_reason()
    if reasons:
        why = Table(title="rejected rows by reason")
        for column in ("reason", "rows", "first at"):
            why.add_column(column)
        for reason in reasons:
            where = f"{Path(reason.first_file).name}:{reason.first_line}"
            why.add_row(reason.reason, f"{reason.count:,}", where)
        console.print(why)
        console.print(f"rejected rows written to {report.rejects_path}", soft_wrap=True)
    for warning in report.warnings:
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Source files to load.", show_default=False)],
    format_name: Annotated[
        str, typer.Option("--format", "-f", help="Source format; see 'shoprec formats'.")
    ],
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    table: Annotated[
        str | None,
        typer.Option(help="For csv/parquet/jsonl: events, items or users (default: by file name)."),
    ] = None,
    entity_type: Annotated[
        str | None, typer.Option(help="Entity type of the items loaded.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load source files into the workspace lake, with a report of every rejected row."""
    settings = settings_for(config, workspace)
    ingest_config = settings.ingest.model_copy(
        update={k: v for k, v in {"table": table, "entity_type": entity_type}.items() if v}
    )
    with progress_bar(f"ingesting {len(paths)} file(s) as {format_name}") as bar:
        load = partial(
            ingest_files,
            paths,
            format_name,
            workspace=settings.workspace,
            config=ingest_config,
            on_step=bar.say,
        )
        report = run(load)
    if json_output:
        console.print_json(json.dumps(report.to_dict()))
    else:
        _print_report(report)


@app.command()
def formats() -> None:
    """List the source formats 'shoprec ingest --format' reads."""
    table = Table("format", "reads")
    for name, summary in adapter_names().items():
        table.add_row(name, summary)
    console.print(table)


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="Folder to write items.csv, users.csv and events.")],
    events: Annotated[int, typer.Option(help="Number of events.")] = 200_000,
    users: Annotated[int | None, typer.Option(help="Number of users (default events/40).")] = None,
    items: Annotated[int | None, typer.Option(help="Number of items (default events/250).")] = None,
    days: Annotated[int, typer.Option(help="Days of activity.")] = 180,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same shop.")] = 7,
    events_format: Annotated[
        str, typer.Option("--events-format", help="parquet or csv.")
    ] = "parquet",
) -> None:
    """Write a synthetic shop (catalogue, users, event log) in the canonical format."""
    try:
        spec = ShopSpec(events=events, users=users, items=items, days=days, seed=seed)
    except ValueError as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    with progress_bar("generating events") as bar:
        shop = generate_shop(spec, out, events_format=events_format, on_progress=bar.count)
    console.print(
        f"wrote {shop.n_items:,} items to {shop.items_path}, {shop.n_users:,} users to "
        f"{shop.users_path} and {shop.n_events:,} events to {shop.events_path}"
    )


def print_summary(workspace: Path) -> None:
    summary = lake_summary(workspace)
    table = Table(title=f"workspace {workspace}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, dict):
            for sub, count in value.items():
                table.add_row(
                    f"{key}: {sub}", f"{count:,}" if isinstance(count, int) else str(count)
                )
        else:
            table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


@app.command()
def summary(workspace: WorkspaceOption = None, config: ConfigOption = None) -> None:
    """Summarise what the workspace lake holds."""
    settings = settings_for(config, workspace)
    run(lambda: print_summary(settings.workspace))
