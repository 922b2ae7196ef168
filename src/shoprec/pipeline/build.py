"""``shoprec build``: train the configured models and publish them as one run.

A run lives in ``<workspace>/models/<run-id>/``: one file per model and a ``manifest.json``
(config, data fingerprint, models, timings, metrics when evaluated, and the size and SHA-256 of
every file the build wrote). The manifest is written last, atomically, after the files are on
disk, so a run without one is a build that did not finish. ``models/CURRENT`` names the published
run and is replaced atomically, so a reader never sees half a run.

A run is checked before it is published and before a server loads it (:func:`verify_run`): a
missing, truncated or altered file, or no readable manifest, refuses it with one line saying
what is wrong, and the published run stays as it was. A build that cannot write its run (a full
disk) removes what it wrote and says so; ``CURRENT`` is not touched.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from shoprec.config import Settings
from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENT_TYPE, ITEM_ID, TS, USER_ID
from shoprec.exceptions import DataError, LakeError
from shoprec.files import inside, replaced_atomically
from shoprec.models import Recommender, fit_model, shared_fits

if TYPE_CHECKING:
    from shoprec.evaluation.runner import EvaluationResult

__all__ = [
    "BuildResult",
    "build",
    "current_run",
    "gate_summary",
    "list_runs",
    "load_model",
    "publish",
    "resolve_default",
    "verify_run",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    run_id: str
    run_dir: Path
    fit_seconds: dict[str, float]
    default_model: str
    validation: dict[str, Any] | None = None  # the default model's gate (two-stage)
    warnings: tuple[str, ...] = ()


def resolve_default(default_model: str, models: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The model a run serves by default, and why: ``auto`` is the first two-stage model
    (its validation gate picks what it serves), else the first model."""
    if default_model != "auto":
        return default_model, "configured"
    for name, config in models.items():
        if config.get("kind") == "two_stage":
            return name, "auto: the two-stage model, which serves what its validation gate chose"
    first = next(iter(models))
    return first, "auto: no two-stage model is configured; the first model"


def gate_summary(model: Recommender[Any]) -> dict[str, Any] | None:
    """What a two-stage model's validation gate found, for the manifest and the build output."""
    if not hasattr(model, "validation_"):
        return None
    labels = getattr(model, "labels_", None)
    scheme = getattr(model, "scheme_", None)
    return {
        "labels": labels.to_dict() if labels is not None else None,
        "examples": scheme.to_dict() if scheme is not None else None,
        "table": model.validation_,
        "serves": getattr(model, "scorer_choice", None),
        "why": getattr(model, "choice_reason_", None),
        "exclude_seen": getattr(model, "exclude_seen_", None),
        "warnings": list(getattr(model, "warnings_", [])),
    }


def _fingerprint(events: pl.DataFrame) -> dict[str, Any]:
    stats = events.select(
        pl.len().alias("events"),
        pl.col(USER_ID).n_unique().alias("users"),
        pl.col(ITEM_ID).n_unique().alias("items"),
        pl.col(TS).min().alias("first"),
        pl.col(TS).max().alias("last"),
    ).row(0, named=True)
    by_type = dict(events.group_by(EVENT_TYPE).len().sort(EVENT_TYPE).iter_rows())
    return {
        **{k: str(v) if isinstance(v, datetime) else v for k, v in stats.items()},
        "by_type": by_type,
    }


def build(
    events: pl.DataFrame,
    settings: Settings,
    *,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    source: str = "lake",
    publish_run: bool = True,
    on_model: Callable[[str], None] | None = None,
    evaluation: EvaluationResult | None = None,
) -> BuildResult:
    """Fit every configured model on ``events`` and write the run (published by default).

    With a catalogue (``items``), the embeddings step comes first (``embeddings.build``): the
    items are enriched through the workspace cache, and content models take their text vectors
    from the result (``text_source: auto``).

    ``evaluation`` (of the same models, on a split of the same data) goes into the manifest's
    ``metrics`` and the run's ``report/`` folder, so the registry shows how good a run is.
    """
    if events.height == 0:
        raise DataError("cannot build: the training events are empty")
    enrichment: dict[str, Any] | None = None
    if items is not None and items.height and settings.embeddings.build:
        items, enrichment = _enrich(items, settings)
    dataset = Dataset.from_events(events, items=items, users=users, weights=settings.event_weights)
    if dataset.interactions.height == 0:
        raise DataError(
            "cannot build: no event has a user, an item and an event type with a weight "
            f"(weights: {settings.event_weights.weights})"
        )
    stamp = datetime.now(UTC)
    run_id = f"{stamp:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = settings.workspace / "models" / run_id
    try:
        run_dir.mkdir(parents=True)
        result = _write_run(
            run_dir, stamp, dataset, events, settings, source, on_model, evaluation, enrichment
        )
    except BaseException as exc:
        # Half a run is never left behind: without its manifest it could not be published
        # anyway, and on a full disk its files are the space the next build needs.
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, OSError):
            raise LakeError(_write_failure(settings.workspace, run_id, exc)) from None
        raise
    if publish_run:
        publish(settings.workspace, run_id)
    return result


def _write_failure(workspace: Path, run_id: str, exc: OSError) -> str:
    """One line for a run the build could not write: why, and what is still published."""
    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        what = "no space left on the device"
    where = f" ({Path(exc.filename).name})" if exc.filename else ""
    try:
        current = (workspace / "models" / "CURRENT").read_text().strip()
    except OSError:
        current = None
    kept = f"run {current} is still the published one" if current else "nothing is published"
    return f"cannot write run {run_id}: {what}{where}; the partial run was removed and {kept}"


def _write_run(
    run_dir: Path,
    stamp: datetime,
    dataset: Dataset,
    events: pl.DataFrame,
    settings: Settings,
    source: str,
    on_model: Callable[[str], None] | None,
    evaluation: EvaluationResult | None,
    enrichment: dict[str, Any] | None,
) -> BuildResult:
    """Fit the models into ``run_dir`` and write its manifest last (not published here)."""
    run_id = run_dir.name
    fit_seconds: dict[str, float] = {}
    entries: dict[str, Any] = {}
    default_model, default_why = resolve_default(settings.default_model, settings.models)
    # Two-stage models first: the generators they fit on all the data are the standalone
    # models of the same config (fitted once).
    order = sorted(settings.models, key=lambda n: settings.models[n].get("kind") != "two_stage")
    validation: dict[str, Any] | None = None
    warnings: list[str] = []
    with shared_fits():
        for name in order:
            if on_model is not None:
                on_model(name)
            started = time.perf_counter()
            try:
                model = fit_model(settings.models[name], dataset)
            except DataError as exc:
                if name == default_model:
                    raise
                # a model these data refuse (EASE over a huge catalogue) is left out, loudly
                warnings.append(f"{name}: not built: {exc}")
                logger.warning("%s: not built: %s", name, exc)
                continue
            fit_seconds[name] = time.perf_counter() - started
            model.save(run_dir / f"{name}.pkl")
            entries[name] = {
                "kind": model.config.kind,
                "config": model.config.model_dump(mode="json"),
                "file": f"{name}.pkl",
                "fit_seconds": round(fit_seconds[name], 3),
            }
            summary = gate_summary(model)
            if summary is not None:
                entries[name]["validation"] = summary
                warnings += [f"{name}: {w}" for w in summary["warnings"]]
                for line in summary["warnings"]:
                    logger.warning("%s: %s", name, line)
                if name == default_model:
                    validation = summary
    entries = {name: entries[name] for name in settings.models if name in entries}
    fit_seconds = {name: fit_seconds[name] for name in settings.models if name in fit_seconds}
    manifest = {
        "run_id": run_id,
        "created_at": stamp.isoformat(),
        "source": source,
        "data": _fingerprint(events),
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "event_weights": settings.event_weights.model_dump(mode="json"),
        "models": entries,
        "embeddings": enrichment,
        "default_model": default_model,
        "default_model_why": default_why,
        "validation": validation,
        "warnings": warnings,
        "metrics": {},
    }
    if evaluation is not None:
        from shoprec.evaluation.report import write_report

        manifest["metrics"] = {
            f"{r.name}{'' if r.exclude_seen else ' (seen kept)'}": r.metrics
            for r in evaluation.runs
        }
        manifest["evaluation"] = {
            "split": evaluation.split,
            "k": evaluation.k,
            "test_users": evaluation.n_test_users,
        }
        write_report(evaluation, run_dir / "report", title=f"shoprec run {run_id}")
    files = _seal(run_dir)
    manifest["files"] = files
    manifest["artefacts"] = {name: entry["bytes"] for name, entry in files.items()}
    with replaced_atomically(run_dir / "manifest.json") as temporary:
        temporary.write_text(json.dumps(manifest, indent=2))
        _sync(temporary)
    _sync(run_dir)
    return BuildResult(run_id, run_dir, fit_seconds, default_model, validation, tuple(warnings))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _sync(path: Path) -> None:
    """Flush a file or a folder's entries to the disk (a run is durable before it is named)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _seal(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every file of the run, flushed to the disk, with its size and SHA-256 (for the
    manifest: :func:`verify_run` checks them)."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file():
            _sync(path)
            name = path.relative_to(run_dir).as_posix()
            files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    for folder in {path.parent for path in run_dir.rglob("*")}:
        _sync(folder)
    return files


def _enrich(items: pl.DataFrame, settings: Settings) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The embeddings step: the catalogue enriched through the workspace cache with the
    configured provider, returned with each item's text vector (for the content model) and a
    summary for the manifest. Entities left unembedded are logged, not fatal: they get no text
    block, and the next build or 'shoprec enrich' retries them."""
    from shoprec.embeddings.cache import with_item_embeddings
    from shoprec.embeddings.enrich import describe, enrich_catalogue

    report = enrich_catalogue(items, settings)
    if report.failed:
        logger.warning("embeddings step: %s", describe(report))
    summary = {key: value for key, value in report.to_dict().items() if key != "failures"} | {
        "seconds": round(report.seconds, 3)
    }
    return with_item_embeddings(items, settings.workspace, report.provider), summary


def publish(workspace: Path, run_id: str) -> None:
    """Make ``run_id`` the current run (an atomic replace of ``models/CURRENT``), once
    :func:`verify_run` finds it whole; a run that is not is refused (:class:`LakeError`) and
    ``CURRENT`` is left as it was."""
    models_dir = workspace / "models"
    verify_run(workspace, run_id)
    temporary = models_dir / f".CURRENT.{os.getpid()}"
    temporary.write_text(run_id + "\n")
    _sync(temporary)
    os.replace(temporary, models_dir / "CURRENT")
    _sync(models_dir)


def verify_run(workspace: Path, run_id: str) -> dict[str, Any]:
    """The manifest of ``run_id`` once the run is found whole: its folder and a readable
    manifest of that run exist, every model file it names is there, and every file it
    recorded has the recorded size and SHA-256 (runs built before checksums were recorded:
    the recorded sizes). Otherwise :class:`LakeError` with one line naming the first problem."""
    run_dir = run_folder(workspace, run_id)
    if not run_dir.is_dir():
        raise LakeError(f"run {run_id}: no such run in the workspace")
    refused = f"run {run_id} is refused"
    try:
        text = (run_dir / "manifest.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LakeError(
            f"{refused}: it has no manifest.json (a build that did not finish)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LakeError(f"{refused}: cannot read its manifest.json: {exc}") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LakeError(f"{refused}: its manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("run_id") != run_id:
        raise LakeError(f"{refused}: its manifest.json is not this run's")
    models = manifest.get("models")
    if not isinstance(models, dict) or manifest.get("default_model") not in models:
        raise LakeError(f"{refused}: its manifest.json names no default model it has")
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):  # before checksums: sizes only
        sizes = manifest.get("artefacts") or {}
        recorded = {name: {"bytes": size} for name, size in sizes.items()}
    for entry in models.values():
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _run_file(run_dir, name, refused).is_file():
            raise LakeError(f"{refused}: its model file {name} is missing")
    for name, expected in recorded.items():
        _check_file(run_dir, name, expected, refused)
    return manifest


def run_folder(workspace: Path, run_id: str) -> Path:
    """``models/<run_id>`` of ``workspace``. A run id is one plain folder name: an id that is a
    path, starts with a dot or holds a control character is refused (:class:`LakeError`), so
    that no id from a request, a command line or ``CURRENT`` leads outside the workspace."""
    if run_id.startswith(".") or "/" in run_id or "\\" in run_id or len(run_id) > 200:
        raise LakeError(f"{run_id[:200]!r} is not a run id")
    try:
        return inside(workspace / "models", run_id)
    except ValueError:
        raise LakeError(f"{run_id[:200]!r} is not a run id") from None


def _run_file(run_dir: Path, name: str, refused: str) -> Path:
    """A file that a run's manifest names, which must lie inside the run's folder."""
    try:
        return inside(run_dir, name)
    except ValueError as exc:
        raise LakeError(f"{refused}: its manifest names a file outside the run: {exc}") from None


def _check_file(run_dir: Path, name: str, expected: dict[str, Any], refused: str) -> None:
    path = _run_file(run_dir, name, refused)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LakeError(f"{refused}: {name} is missing") from None
    wrote = expected.get("bytes")
    if size != wrote:
        written = f"{wrote:,}" if isinstance(wrote, int) else "an unknown number of"
        raise LakeError(f"{refused}: {name} has {size:,} bytes, its build wrote {written}")
    if "sha256" in expected and _sha256(path) != expected["sha256"]:
        raise LakeError(f"{refused}: {name} is not the file its build wrote (SHA-256 differs)")


def list_runs(workspace: Path) -> list[dict[str, Any]]:
    """Every run of the workspace, newest first: id, time, models, data size and metrics."""
    models_dir = workspace / "models"
    pointer = models_dir / "CURRENT"
    current = pointer.read_text().strip() if pointer.is_file() else None
    runs = []
    for path in models_dir.glob("*/manifest.json"):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a run being written, or a broken one: not listed
        if not isinstance(manifest, dict):
            continue
        runs.append(
            {
                "run_id": path.parent.name,  # the folder, whatever the manifest says
                "created_at": manifest.get("created_at"),
                "current": path.parent.name == current,
                "default_model": manifest.get("default_model"),
                "models": sorted(manifest.get("models", {})),
                "events": manifest.get("data", {}).get("events"),
                "users": manifest.get("n_users"),
                "items": manifest.get("n_items"),
                "metrics": manifest.get("metrics", {}),
            }
        )
    return sorted(runs, key=lambda run: str(run["created_at"]), reverse=True)


def current_run(workspace: Path) -> tuple[str, dict[str, Any]]:
    """The published run's id and manifest."""
    pointer = workspace / "models" / "CURRENT"
    if not pointer.is_file():
        raise LakeError(f"{workspace}: no published model run; run 'shoprec build' first")
    run_id = pointer.read_text().strip()
    manifest_path = run_folder(workspace, run_id) / "manifest.json"
    try:
        return run_id, json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LakeError(f"{manifest_path}: cannot read the run manifest: {exc}") from None


def load_model(workspace: Path, name: str | None = None) -> tuple[Recommender[Any], str]:
    """A model of the current run (its default model unless ``name`` is given) and its name."""
    run_id, manifest = current_run(workspace)
    chosen = name or manifest["default_model"]
    if chosen not in manifest["models"]:
        known = ", ".join(manifest["models"])
        raise LakeError(f"run {run_id} has no model {chosen!r}; it has {known}")
    path = _run_file(
        run_folder(workspace, run_id), str(manifest["models"][chosen]["file"]), f"run {run_id}"
    )
    return Recommender.load(path), chosen
