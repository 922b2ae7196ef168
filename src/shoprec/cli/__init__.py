"""The ``shoprec`` command line: ``app`` is the typer application (the console script)."""

from shoprec.cli import data, demo, enrich, models, serving  # noqa: F401  (registers the commands)
from shoprec.cli.common import app

__all__ = ["app"]
