"""The evaluation report: ``metrics.json`` and a self-contained ``report.html`` with plots."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the object API: no pyplot state, no display needed

from shoprec.evaluation.runner import EvaluationResult, ModelRun

__all__ = ["write_report"]

_CURVES = ("ndcg", "recall", "precision", "hit_rate")


def _own_runs(result: EvaluationResult) -> list[ModelRun]:
    """Each model once, with its own exclude-seen setting (the first run of each model)."""
    seen: dict[str, ModelRun] = {}
    for run in result.runs:
        seen.setdefault(run.name, run)
    return list(seen.values())


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _curves(result: EvaluationResult) -> str:
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    axes = figure.subplots(2, 2)
    for axis, metric in zip(axes.ravel(), _CURVES, strict=True):
        for run in _own_runs(result):
            points = sorted(run.curves.get(metric, {}).items())
            if points:
                axis.plot(
                    [p[0] for p in points], [p[1] for p in points], marker="o", label=run.name
                )
        axis.set_title(f"{metric}@K")
        axis.set_xlabel("K")
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle("Accuracy at K (each model with its own exclude-seen setting)")
    return _png(figure)


def _popularity(result: EvaluationResult) -> str:
    runs = _own_runs(result)
    data = [np.log10(1.0 + np.asarray(result.catalogue_popularity))]
    data += [np.log10(1.0 + np.asarray(r.recommended_popularity or [0.0])) for r in runs]
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axis = figure.subplots()
    axis.boxplot(data, showfliers=False)
    axis.set_xticks(range(1, len(data) + 1), ["catalogue", *[r.name for r in runs]], rotation=20)
    axis.set_ylabel("log10(1 + users who touched the item)")
    axis.set_title(f"Popularity of recommended items (top {result.k}) against the catalogue")
    axis.grid(alpha=0.3, axis="y")
    return _png(figure)


def _bars(result: EvaluationResult, metrics: tuple[str, ...], title: str) -> str | None:
    runs = _own_runs(result)
    names = [f"{m}@{result.k}" for m in metrics]
    if not any(name in run.metrics for run in runs for name in names):
        return None
    figure = Figure(figsize=(11, 4), layout="constrained")
    axis = figure.subplots()
    width = 0.8 / len(names)
    for offset, name in enumerate(names):
        values = [run.metrics.get(name, math.nan) for run in runs]
        axis.bar(np.arange(len(runs)) + offset * width, values, width, label=name)
    axis.set_xticks(
        np.arange(len(runs)) + width * (len(names) - 1) / 2, [r.name for r in runs], rotation=20
    )
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=8)
    axis.set_title(title)
    axis.grid(alpha=0.3, axis="y")
    return _png(figure)


def _importance(result: EvaluationResult) -> str | None:
    """The ranker's 20 most used features (split counts), for models that have one."""
    run = next((r for r in result.runs if r.feature_importance), None)
    if run is None:
        return None
    top = sorted(run.feature_importance.items(), key=lambda pair: -pair[1])[:20][::-1]
    figure = Figure(figsize=(11, 6), layout="constrained")
    axis = figure.subplots()
    axis.barh([name for name, _ in top], [value for _, value in top])
    axis.set_title(f"{run.name}: feature importance (splits)")
    axis.grid(alpha=0.3, axis="x")
    return _png(figure)


def _table(result: EvaluationResult) -> str:
    table = result.table()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    best: dict[str, float] = {}
    for column in table.columns[2:]:
        values = [v for v in table.get_column(column).to_list() if isinstance(v, float)]
        finite = [v for v in values if not math.isnan(v)]
        if finite and column not in ("fit_s", "recommend_s", "gini@" + str(result.k)):
            best[column] = max(finite) if not column.startswith("missed") else min(finite)
    rows = []
    for row in table.iter_rows(named=True):
        cells = []
        for column, value in row.items():
            text = f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))
            mark = " class='best'" if column in best and value == best[column] else ""
            cells.append(f"<td{mark}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_report(
    result: EvaluationResult, out_dir: Path, *, title: str = "shoprec evaluation"
) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``report.html`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    sections = [
        ("Summary", _table(result)),
        (
            "Accuracy at K",
            f"<img alt='metric at K curves' src='data:image/png;base64,{_curves(result)}'>",
        ),
        (
            "Popularity bias",
            f"<img alt='popularity of recommended items' "
            f"src='data:image/png;base64,{_popularity(result)}'>",
        ),
    ]
    coverage = _bars(result, ("coverage", "gini"), "Catalogue coverage and exposure Gini")
    if coverage:
        sections.append(
            ("Coverage", f"<img alt='coverage' src='data:image/png;base64,{coverage}'>")
        )
    prices = _bars(
        result,
        ("price_tier_fit",),
        "Price-tier check: share of recommended items inside the user's price range",
    )
    if prices:
        sections.append(
            ("Price tier", f"<img alt='price tier' src='data:image/png;base64,{prices}'>")
        )
    else:
        sections.append(("Price tier", "<p>No prices in the data: the check was skipped.</p>"))
    importance = _importance(result)
    if importance:
        sections.append(
            (
                "Ranker features",
                f"<img alt='feature importance' src='data:image/png;base64,{importance}'>",
            )
        )
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; }}
td.best {{ background: #e3f5e1; font-weight: bold; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(result.split)} · {result.n_train_events:,} training events ·
{result.n_test_users:,} test users · {result.n_items:,} items · K = {result.k} · {stamp}</p>
<p>Every metric is computed over the full catalogue for every test user; a test user with no
recommendation scores 0. Each model appears with and without the user's seen items excluded
(the column <code>exclude_seen</code>); the best value of each column is highlighted.</p>
{body}
</body></html>
"""
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return metrics_path, html_path
