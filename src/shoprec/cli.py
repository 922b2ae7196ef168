"""The ``shoprec`` command line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from shoprec.config import Settings, load_settings
from shoprec.data.formats import adapter_names
from shoprec.data.ingest import ingest as ingest_files
from shoprec.data.report import LoadReport
from shoprec.data.summary import lake_summary
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.exceptions import ShoprecError

app = typer.Typer(
    name="shoprec",
    help="shoprec: a self-hosted recommendation engine for shops and marketplaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace", "-w", help="Workspace folder [env SHOPREC_WORKSPACE; default ./shoprec-data]"
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML or TOML config file.")
]


def _run(action: Callable[[], T]) -> T:
    """Run a command body; a deliberate error becomes one red line and exit code 2."""
    try:
        return action()
    except ShoprecError as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("SHOPREC_DEBUG"):
            raise
        errors.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc} "
            "(set SHOPREC_DEBUG=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code=1) from None


def _settings(config: Path | None, workspace: Path | None) -> Settings:
    return _run(lambda: load_settings(config, workspace=workspace))


class _Bar:
    """A rich progress line on stderr: a bar when the total is known, a spinner otherwise."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def count(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def say(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextmanager
def _progress(description: str) -> Iterator[_Bar]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as progress:
        yield _Bar(progress, progress.add_task(description, total=None))


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
    settings = _settings(config, workspace)
    ingest_config = settings.ingest.model_copy(
        update={k: v for k, v in {"table": table, "entity_type": entity_type}.items() if v}
    )
    with _progress(f"ingesting {len(paths)} file(s) as {format_name}") as bar:
        load = partial(
            ingest_files,
            paths,
            format_name,
            workspace=settings.workspace,
            config=ingest_config,
            on_step=bar.say,
        )
        report = _run(load)
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
    with _progress("generating events") as bar:
        shop = generate_shop(spec, out, events_format=events_format, on_progress=bar.count)
    console.print(
        f"wrote {shop.n_items:,} items to {shop.items_path}, {shop.n_users:,} users to "
        f"{shop.users_path} and {shop.n_events:,} events to {shop.events_path}"
    )


def _print_summary(workspace: Path) -> None:
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
    settings = _settings(config, workspace)
    _run(lambda: _print_summary(settings.workspace))


@app.command()
def demo(
    workspace: WorkspaceOption = None,
    events: Annotated[int, typer.Option(help="Size of the synthetic shop.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """The main job on embedded defaults: generate a synthetic shop, ingest it, summarise."""
    settings = _settings(None, workspace)
    source = settings.workspace / "source"
    console.rule("1/3 generate a synthetic shop")
    generate(source, events=events, seed=seed)
    console.rule("2/3 ingest it into the lake")
    table = Table("file", "format", "rows read", "rejected", "new events", "items", "users")
    for name, fmt in (("items.csv", "csv"), ("users.csv", "csv"), ("events.parquet", "parquet")):
        with _progress(f"ingesting {name}"):
            load = partial(
                ingest_files,
                [source / name],
                fmt,
                workspace=settings.workspace,
                config=settings.ingest,
            )
            report = _run(load)
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
    console.rule("3/3 what the lake holds")
    _print_summary(settings.workspace)


def main() -> None:  # pragma: no cover - console entry
    app(sys.argv[1:])
