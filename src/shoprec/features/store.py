"""Where feature tables live: offline (Parquet in the workspace) and online (by key, for
serving). Both serve the same values: the online store is loaded from the offline tables.

Online stores open by URL (DESIGN §3): ``memory://`` is the embedded default; the real-time
issue adds ``redis://``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from shoprec.data.schema import ITEM_ID, USER_ID
from shoprec.exceptions import ConfigError, LakeError
from shoprec.features.build import FeatureTables

__all__ = ["MemoryOnlineStore", "OfflineFeatureStore", "OnlineStore", "open_online_store"]

_TABLES = ("users", "items", "pairs", "user_categories")


class OfflineFeatureStore:
    """Feature tables of one cutoff under ``<workspace>/features/<as_of>/``."""

    def __init__(self, workspace: Path | str) -> None:
        self.root = Path(workspace) / "features"

    def write(self, tables: FeatureTables) -> Path:
        folder = self.root / tables.as_of.strftime("%Y%m%dT%H%M%S")
        staging = folder.with_name(folder.name + ".tmp")
        staging.mkdir(parents=True, exist_ok=True)
        for name in _TABLES:
            getattr(tables, name).write_parquet(staging / f"{name}.parquet")
        (staging / "as_of.json").write_text(json.dumps({"as_of": tables.as_of.isoformat()}))
        if folder.exists():
            for old in folder.iterdir():
                old.unlink()
            folder.rmdir()
        os.replace(staging, folder)
        return folder

    def latest(self) -> FeatureTables:
        folders = sorted(
            p for p in self.root.glob("*") if p.is_dir() and not p.name.endswith(".tmp")
        )
        if not folders:
            raise LakeError(f"{self.root}: no feature tables written yet")
        return self.read(folders[-1])

    @staticmethod
    def read(folder: Path) -> FeatureTables:
        as_of = datetime.fromisoformat(json.loads((folder / "as_of.json").read_text())["as_of"])
        frames = [pl.read_parquet(folder / f"{name}.parquet") for name in _TABLES]
        return FeatureTables(as_of, *frames)


class OnlineStore(Protocol):
    """Feature rows by key, for one request at a time."""

    def load(self, tables: FeatureTables) -> None: ...

    def user(self, user_id: str) -> dict[str, Any] | None: ...

    def item(self, item_id: str) -> dict[str, Any] | None: ...

    def pair(self, user_id: str, item_id: str) -> dict[str, Any] | None: ...


class MemoryOnlineStore:
    """The embedded online store: dictionaries in this process."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, Any]] = {}
        self._items: dict[str, dict[str, Any]] = {}
        self._pairs: dict[tuple[str, str], dict[str, Any]] = {}

    def load(self, tables: FeatureTables) -> None:
        self._users = {row.pop(USER_ID): row for row in tables.users.iter_rows(named=True)}
        self._items = {row.pop(ITEM_ID): row for row in tables.items.iter_rows(named=True)}
        self._pairs = {
            (row.pop(USER_ID), row.pop(ITEM_ID)): row for row in tables.pairs.iter_rows(named=True)
        }

    def user(self, user_id: str) -> dict[str, Any] | None:
        return self._users.get(user_id)

    def item(self, item_id: str) -> dict[str, Any] | None:
        return self._items.get(item_id)

    def pair(self, user_id: str, item_id: str) -> dict[str, Any] | None:
        return self._pairs.get((user_id, item_id))


def open_online_store(url: str) -> OnlineStore:
    """An online store by URL: ``memory://`` (embedded)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        return MemoryOnlineStore()
    raise ConfigError(f"unknown online store {url!r}; supported: memory://")
