"""``shoprec enrich``: embed the workspace catalogue through the embedding cache."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shoprec.cli.common import (
    ConfigOption,
    WorkspaceOption,
    app,
    console,
    progress_bar,
    run,
    settings_for,
)
from shoprec.data.lake import Lake
from shoprec.exceptions import DataError, ShoprecError

if TYPE_CHECKING:
    from shoprec.embeddings.enrich import EnrichReport

_SHOWN_FAILURES = 10


def _print_report(report: EnrichReport) -> None:
    table = Table(title=f"enrich with {report.provider}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("provider version", report.version),
        ("dimensions", f"{report.dim:,}"),
        ("entities", f"{report.total:,}"),
        ("cached (no call)", f"{report.cached:,}"),
        ("embedded now", f"{report.embedded:,}"),
        ("failed", f"{report.failed:,}"),
        ("without text", f"{report.empty:,}"),
        ("texts sent", f"{report.texts_sent:,}"),
        ("provider calls", f"{report.calls:,}"),
        ("failed calls", f"{report.failed_calls:,}"),
        ("seconds", f"{report.seconds:.2f}"),
    ):
        table.add_row(label, value)
    console.print(table)
    if report.failures:
        failures = Table(title=f"first failures (of {report.failed:,})")
        failures.add_column("item_id", no_wrap=True)
        failures.add_column("reason")
        for failure in report.failures[:_SHOWN_FAILURES]:
            failures.add_row(failure.item_id, failure.reason)
        console.print(failures)


@app.command()
def enrich(
    workspace: WorkspaceOption = None,
    config: ConfigOption = None,
    provider: Annotated[
        str | None,
        typer.Option(help="tfidf, minilm or http (default from the config: tfidf)."),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help="tfidf: fit again on the current catalogue (a new version: every item is "
            "embedded again). Without it the saved fit is reused.",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Embed the catalogue's items: only new or changed ones reach the provider.

    Exits with code 2 when some entities remain unembedded (a re-run sends only those).
    """
    settings = settings_for(config, workspace)

    def body() -> None:
        from shoprec.embeddings.enrich import describe, enrich_catalogue

        lake = Lake(settings.workspace)
        items = lake.items() if lake.items_path.exists() else None
        if items is None or items.height == 0:
            raise DataError(f"{lake.items_path}: the lake holds no items; ingest a catalogue first")
        with progress_bar(f"enriching {items.height:,} items") as bar:
            report = enrich_catalogue(
                items, settings, provider=provider, refit=refit, on_progress=bar.count
            )
        if json_output:
            console.print_json(json.dumps(report.to_dict()))
        else:
            _print_report(report)
        if report.failed:
            raise ShoprecError(describe(report))
        if not json_output:  # --json prints the report and nothing else on stdout
            console.print(describe(report), highlight=False, soft_wrap=True)

    run(body)
