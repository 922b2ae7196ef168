"""The embedding cache of a workspace: every vector a provider made, kept so it is made once.

A vector is keyed by (provider name, provider version, content hash of the entity's text)::

    <workspace>/embeddings/
      vectors/<provider>/<version>/<time>-part-<id>.parquet   # hash, vector: one per batch
      vectors/<provider>/<version>/<time>-compact-<id>.parquet  # parts merged on load
      items/<provider>.parquet   # item_id, entity_type, hash, version of the latest enrichment
      current.json               # per provider: version, dim, time; and the latest provider
      calls.jsonl                # one line per provider call (see shoprec.embeddings.enrich)
      tfidf.pkl                  # the fitted TF-IDF provider

Each successful batch is written as its own part file (written to a temporary name, synced,
then renamed), so a failure later in an enrichment loses nothing already embedded. Loading a
(provider, version) merges its parts into one file. The item map says which content each item
had at its latest enrichment, so :func:`load_item_embeddings` gives "the current vector of every
item" without any provider.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprec.data.schema import EMBEDDING, EMBEDDING_VERSION, ENTITY_TYPE, ITEM_ID
from shoprec.embeddings.protocol import content_hash
from shoprec.embeddings.text import entity_texts
from shoprec.exceptions import LakeError
from shoprec.files import replaced_atomically

__all__ = [
    "EmbeddingCache",
    "ItemEmbeddings",
    "embedding_columns",
    "load_item_embeddings",
    "with_item_embeddings",
]

HASH = "hash"
VECTOR = "vector"
VERSION = "version"
_RETRIES = 5
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # listings raced by a concurrent compaction


def _write_durably(frame: pl.DataFrame, target: Path) -> None:
    """Write ``frame`` to ``target`` so that a reader sees all of it or nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    frame.write_parquet(temporary, statistics=False)
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with replaced_atomically(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2))


@dataclass
class _Loaded:
    files: frozenset[str]
    table: pl.DataFrame  # hash, vector; unique by hash


class EmbeddingCache:
    """The vectors and item map of one workspace (see the module docstring).

    One object may be shared by threads; other processes' writes are seen at the next lookup.
    """

    def __init__(self, workspace: Path | str) -> None:
        self.workspace = Path(workspace)
        self.root = self.workspace / "embeddings"
        self._loaded: dict[tuple[str, str], _Loaded] = {}
        self._lock = threading.Lock()

    # -- paths -----------------------------------------------------------------------------------
    def vectors_dir(self, provider: str, version: str) -> Path:
        return self.root / "vectors" / _folder_name(provider) / _folder_name(version)

    def items_path(self, provider: str) -> Path:
        return self.root / "items" / f"{provider}.parquet"

    @property
    def current_path(self) -> Path:
        return self.root / "current.json"

    @property
    def calls_path(self) -> Path:
        return self.root / "calls.jsonl"

    @property
    def tfidf_path(self) -> Path:
        return self.root / "tfidf.pkl"

    # -- vectors ---------------------------------------------------------------------------------
    def _files(self, provider: str, version: str) -> list[Path]:
        folder = self.vectors_dir(provider, version)
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def _read(self, files: Sequence[Path]) -> pl.DataFrame:
        frames = [pl.read_parquet(path) for path in files]
        table = pl.concat(frames) if frames else pl.DataFrame(schema={HASH: pl.String})
        return table.unique(HASH, keep="last", maintain_order=True)

    def _table(self, provider: str, version: str) -> pl.DataFrame:
        """Every vector of (provider, version), parts merged; new files read incrementally."""
        key = (provider, version)
        with self._lock:
            for _ in range(_RETRIES):
                files = self._files(provider, version)
                names = frozenset(path.name for path in files)
                loaded = self._loaded.get(key)
                if loaded is not None and loaded.files == names:
                    return loaded.table
                try:
                    if loaded is not None and loaded.files and loaded.files <= names:
                        new = self._read([p for p in files if p.name not in loaded.files])
                        table = pl.concat([loaded.table, new], how="vertical_relaxed")
                        table = table.unique(HASH, keep="last", maintain_order=True)
                    else:
                        table = self._read(files)
                        if len(files) > 1:
                            self._compact(provider, version, files, table)
                            names = frozenset(p.name for p in self._files(provider, version))
                except FileNotFoundError:  # a concurrent compaction removed a part: list again
                    continue
                self._loaded[key] = _Loaded(names, table)
                return table
        raise LakeError(
            f"{self.vectors_dir(provider, version)}: the cache kept changing while being read"
        )

    def _compact(
        self, provider: str, version: str, files: Sequence[Path], table: pl.DataFrame
    ) -> None:
        target = self.vectors_dir(provider, version) / f"{time.time_ns():020d}-compact-{_tag()}"
        _write_durably(table, target.with_suffix(".parquet"))
        for path in files:
            path.unlink(missing_ok=True)

    def compact(self, provider: str, version: str) -> None:
        """Merge the part files of (provider, version) into one (loading does it too)."""
        with self._lock:
            self._loaded.pop((provider, version), None)
        self._table(provider, version)

    def lookup(
        self, provider: str, version: str, hashes: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the given content hashes, in order (zeros where missing), and a mask of
        those found."""
        table = self._table(provider, version)
        if table.height == 0:
            return np.zeros((len(hashes), 0), np.float32), np.zeros(len(hashes), bool)
        wanted = pl.DataFrame({HASH: list(hashes)}, schema={HASH: pl.String})
        joined = wanted.join(table, on=HASH, how="left", maintain_order="left")
        column = joined.get_column(VECTOR)
        found = column.is_not_null().to_numpy()
        vectors = np.nan_to_num(column.to_numpy().astype(np.float32, copy=False))
        return vectors.reshape(len(hashes), -1), found

    def contains(self, provider: str, version: str, hashes: Sequence[str]) -> np.ndarray:
        """Which of the hashes have a vector of (provider, version)."""
        table = self._table(provider, version)
        if table.height == 0:
            return np.zeros(len(hashes), bool)
        wanted = pl.DataFrame({HASH: list(hashes)}, schema={HASH: pl.String})
        known = table.select(HASH, pl.lit(True).alias("__found"))
        joined = wanted.join(known, on=HASH, how="left", maintain_order="left")
        return joined.get_column("__found").fill_null(False).to_numpy()

    def store(
        self, provider: str, version: str, hashes: Sequence[str], vectors: np.ndarray
    ) -> Path:
        """Write one batch of vectors durably, as its own part file; returns its path."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(hashes):
            raise ValueError(f"{len(hashes)} hashes but vectors of shape {vectors.shape}")
        frame = pl.DataFrame(
            {
                HASH: pl.Series(HASH, list(hashes), pl.String),
                VECTOR: pl.Series(VECTOR, vectors, pl.Array(pl.Float32, vectors.shape[1])),
            }
        )
        name = f"{time.time_ns():020d}-part-{_tag()}.parquet"
        target = self.vectors_dir(provider, version) / name
        _write_durably(frame, target)
        return target

    # -- the item map ----------------------------------------------------------------------------
    def record_items(
        self,
        provider: str,
        version: str,
        dim: int,
        item_ids: Sequence[str],
        entity_types: Sequence[str | None],
        hashes: Sequence[str],
        *,
        replace: bool,
    ) -> None:
        """Remember each item's content hash at this enrichment: the whole map when
        ``replace`` (a full catalogue), else an update of these items only."""
        frame = pl.DataFrame(
            {
                ITEM_ID: list(item_ids),
                ENTITY_TYPE: list(entity_types),
                HASH: list(hashes),
                VERSION: [version] * len(hashes),
            },
            schema={
                ITEM_ID: pl.String,
                ENTITY_TYPE: pl.String,
                HASH: pl.String,
                VERSION: pl.String,
            },
        ).unique(ITEM_ID, keep="last", maintain_order=True)
        path = self.items_path(provider)
        if not replace and path.is_file():
            earlier = pl.read_parquet(path).join(frame.select(ITEM_ID), on=ITEM_ID, how="anti")
            frame = pl.concat([earlier, frame])
        _write_durably(frame, path)
        current = self.current()
        current.setdefault("providers", {})[provider] = {
            "version": version,
            "dim": dim,
            "items": frame.height,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        current["latest"] = provider
        _write_json(self.current_path, current)

    def current(self) -> dict[str, Any]:
        """``current.json``: the latest provider and, per provider, version, dim and time."""
        if not self.current_path.is_file():
            return {}
        try:
            data = json.loads(self.current_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LakeError(f"{self.current_path}: cannot read: {exc}") from None
        return data if isinstance(data, dict) else {}

    def item_map(self, provider: str) -> pl.DataFrame:
        """item_id, entity_type, hash, version of the provider's latest enrichment."""
        path = self.items_path(provider)
        if not path.is_file():
            raise LakeError(
                f"{path}: no {provider} embeddings in this workspace; run 'shoprec enrich'"
            )
        return pl.read_parquet(path)

    # -- the call log ----------------------------------------------------------------------------
    def log_call(self, record: dict[str, Any]) -> None:
        """Append one provider call to ``calls.jsonl``."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock, self.calls_path.open("a", encoding="utf-8") as handle:
            handle.write(line)


def _folder_name(name: str) -> str:
    """``name`` where it is a safe folder name, else a hash of it."""
    return name if _SAFE.fullmatch(name) else content_hash(name)


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class ItemEmbeddings:
    """The current vectors of some items: ``vectors[i]`` belongs to ``item_ids[i]`` and is zero
    where ``found[i]`` is false (never enriched, no text, or its latest enrichment failed)."""

    item_ids: list[str]
    vectors: np.ndarray  # (n, dim) float32
    found: np.ndarray  # (n,) bool
    provider: str
    version: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_item_embeddings(
    workspace: Path | str,
    provider: str | None = None,
    item_ids: Sequence[str] | None = None,
) -> ItemEmbeddings:
    """The current vector of each item (all items of the map when ``item_ids`` is None), from
    the latest enrichment by ``provider`` (default: the provider used last).

    No provider is called: this is what a server loads at start-up. Raises :class:`LakeError`
    when the workspace has no embeddings of that provider.
    """
    cache = EmbeddingCache(workspace)
    current = cache.current()
    name = provider or current.get("latest")
    info = current.get("providers", {}).get(name) if name else None
    if not name or info is None:
        which = f"{name} embeddings" if name else "embeddings"
        raise LakeError(f"{cache.root}: no {which} in this workspace; run 'shoprec enrich'")
    version = str(info["version"])
    mapping = cache.item_map(name).filter(pl.col(VERSION) == version)
    ids = mapping.get_column(ITEM_ID).to_list() if item_ids is None else list(item_ids)
    hashes = (
        pl.DataFrame({ITEM_ID: ids}, schema={ITEM_ID: pl.String})
        .join(mapping.select(ITEM_ID, HASH), on=ITEM_ID, how="left", maintain_order="left")
        .get_column(HASH)
        .fill_null("")
        .to_list()
    )
    vectors, found = cache.lookup(name, version, hashes)
    if vectors.shape[1] == 0:
        vectors = np.zeros((len(ids), int(info["dim"])), np.float32)
    return ItemEmbeddings(ids, vectors, found, name, version)


def with_item_embeddings(
    items: pl.DataFrame, workspace: Path | str, provider: str | None = None
) -> pl.DataFrame:
    """``items`` with the ``embedding`` and ``embedding_version`` columns of their current
    vectors (null where an item has none, or where its text changed since it was enriched), for
    the content model's text block."""
    loaded = load_item_embeddings(workspace, provider, items.get_column(ITEM_ID).to_list())
    if loaded.dim == 0 or not loaded.found.any():
        return items
    cache = EmbeddingCache(workspace)
    mapping = cache.item_map(loaded.provider)
    recorded = (
        items.select(ITEM_ID)
        .join(mapping.select(ITEM_ID, HASH), on=ITEM_ID, how="left", maintain_order="left")
        .get_column(HASH)
        .to_list()
    )
    unchanged = np.array(
        [h == content_hash(t) for h, t in zip(recorded, entity_texts(items), strict=True)], bool
    )
    return embedding_columns(
        items, loaded.vectors, loaded.found & unchanged, f"{loaded.provider}/{loaded.version}"
    )


def embedding_columns(
    items: pl.DataFrame, vectors: np.ndarray, usable: np.ndarray, tag: str
) -> pl.DataFrame:
    """``items`` with ``embedding`` (the rows of ``vectors``) and ``embedding_version``
    (``tag``, "<provider>/<version>") columns, both null where ``usable`` is false."""
    keep = pl.Series(np.asarray(usable, bool))
    return items.with_columns(
        pl.Series(EMBEDDING, vectors, pl.Array(pl.Float32, vectors.shape[1])),
        pl.Series(EMBEDDING_VERSION, [tag] * items.height, pl.String),
    ).with_columns(
        pl.when(keep).then(pl.col(EMBEDDING)).alias(EMBEDDING),
        pl.when(keep).then(pl.col(EMBEDDING_VERSION)).alias(EMBEDDING_VERSION),
    )
