"""The storefront (placeholder until the pages land)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from shoprec.serving.app import Service


def add_storefront(app: FastAPI, service: Service) -> None:
    """Add the storefront pages to ``app``."""
