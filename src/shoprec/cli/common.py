"""What every command shares: the app, consoles, options, error handling and progress."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from shoprec.config import Settings, load_settings
from shoprec.exceptions import ConfigError, ShoprecError, describe_validation_error

app = typer.Typer(
    name="shoprec",
    help="shoprec: a self-hosted recommendation engine for shops and marketplaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI) gets room for the wide tables instead of the default 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
T = TypeVar("T")

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace", "-w", help="Workspace folder (env SHOPREC_WORKSPACE; default ./shoprec-data)"
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML or TOML config file.")
]


def run(action: Callable[[], T]) -> T:
    """Run a command body; a deliberate error becomes one red line and exit code 2."""
    try:
        return action()
    except ShoprecError as exc:
        # escaped: brackets in a message are text ('shoprec[redis]'), not markup
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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


def settings_for(config: Path | None, workspace: Path | None) -> Settings:
    """The settings, with the parts other modules define checked (one red line if not)."""

    def load() -> Settings:
        settings = load_settings(config, workspace=workspace)
        check_settings(settings, str(config) if config is not None else "settings")
        return settings

    return run(load)


def check_settings(settings: Settings, where: str) -> None:
    """The settings whose shape models and evaluation define, checked before any work starts:
    :class:`ConfigError` naming ``where`` (the config file) and the field."""
    from shoprec.evaluation.splitters import parse_split_config
    from shoprec.evaluation.tuning import TuningConfig
    from shoprec.models import parse_model_settings

    try:
        parse_model_settings(settings.models, settings.default_model)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        parse_split_config(settings.evaluation.split)
    except ConfigError as exc:
        raise ConfigError(f"{where}: evaluation.split: {exc}") from None
    try:
        TuningConfig.model_validate(settings.evaluation.tuning)
    except ValidationError as exc:
        raise ConfigError(f"{where}: evaluation.tuning: {describe_validation_error(exc)}") from None


class Bar:
    """A rich progress line on stderr: a bar when the total is known, a spinner otherwise."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def count(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def say(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextmanager
def progress_bar(description: str) -> Iterator[Bar]:
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
        yield Bar(progress, progress.add_task(description, total=None))
