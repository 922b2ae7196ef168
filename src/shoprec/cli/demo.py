"""``shoprec demo``: the main job on the embedded defaults."""

from __future__ import annotations

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
from shoprec.data.ingest import ingest as ingest_files


@app.command()
def demo(
    workspace: WorkspaceOption = None,
    events: Annotated[int, typer.Option(help="Size of the synthetic shop.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """The main job on embedded defaults: generate a synthetic shop, ingest it, summarise."""
    settings = settings_for(None, workspace)
    source = settings.workspace / "source"
    console.rule("1/3 generate a synthetic shop")
    generate(source, events=events, seed=seed)
    console.rule("2/3 ingest it into the lake")
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
    console.rule("3/3 what the lake holds")
    print_summary(settings.workspace)
