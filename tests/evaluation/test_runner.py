from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.evaluation.report import write_report
from shoprec.evaluation.runner import EvaluationResult, evaluate_models
from shoprec.evaluation.splitters import Split, TimeSplit
from shoprec.evaluation.tuning import TuningConfig, time_folds, tune
from shoprec.exceptions import ConfigError, DataError, ShoprecError

PERSONAL = ["copurchase", "itemknn", "ease", "als", "bpr", "content", "buy_again"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    folder = tmp_path_factory.mktemp("shop")
    made = generate_shop(ShopSpec(events=40_000, seed=5), folder / "source")
    workspace = folder / "ws"
    ingest([made.items_path], "csv", workspace=workspace)
    ingest([made.events_path], "parquet", workspace=workspace)
    lake = Lake(workspace)
    return lake.events(), lake.items()


@pytest.fixture(scope="module")
def split(shop: tuple[pl.DataFrame, pl.DataFrame]) -> Split:
    return TimeSplit(train_ratio=0.8).split(shop[0])


@pytest.fixture(scope="module")
def result(shop: tuple[pl.DataFrame, pl.DataFrame], split: Split) -> EvaluationResult:
    return evaluate_models({m: m for m in ["popular", *PERSONAL]}, split, items=shop[1])


def test_every_personalised_model_beats_popularity(result: EvaluationResult) -> None:
    table = result.table()

    def ndcg(model: str, exclude: bool) -> float:
        row = table.filter((pl.col("model") == model) & (pl.col("exclude_seen") == exclude))
        return float(row["ndcg@10"].item())

    for model in PERSONAL:
        own = model != "buy_again"  # buy-again's own setting keeps seen items
        assert ndcg(model, own) > ndcg("popular", own), model


def test_table_has_both_variants_and_all_metrics(result: EvaluationResult) -> None:
    table = result.table()
    assert table.height == 2 * (1 + len(PERSONAL))
    for name in (
        "precision",
        "recall",
        "map",
        "ndcg",
        "mrr",
        "hit_rate",
        "missed_offers",
        "coverage",
        "gini",
        "novelty",
        "intra_list_diversity",
        "price_tier_fit",
    ):
        assert f"{name}@10" in table.columns
    run = result.runs[0]
    assert sorted(run.curves["recall"]) == [1, 5, 10, 20]
    recall = [run.curves["recall"][k] for k in (1, 5, 10, 20)]
    assert recall == sorted(recall)
    json.dumps(result.to_dict())  # serialisable as metrics.json


def test_report_files(result: EvaluationResult, tmp_path: Path) -> None:
    metrics_path, html_path = write_report(result, tmp_path / "report")
    assert json.loads(metrics_path.read_text())["k"] == 10
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "<td>content</td>" in page
    assert "price tier" in page.lower()


def test_bad_requests(split: Split) -> None:
    with pytest.raises(ShoprecError, match="k must be a positive"):
        evaluate_models({"p": "popular"}, split, k=0)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate_models({"p": "popular"}, split, metrics=["accuracy"])
    with pytest.raises(ConfigError, match="unknown model 'magic'"):
        evaluate_models({"m": "magic"}, split)
    with pytest.raises(ConfigError, match="no models"):
        evaluate_models({}, split)


def test_tuning_uses_only_training_folds(
    shop: tuple[pl.DataFrame, pl.DataFrame], split: Split
) -> None:
    folds = time_folds(split.train, folds=2, validation_share=0.2, test_event_types=["purchase"])
    assert len(folds) == 2
    last_train = split.train["ts"].max()
    for fold in folds:
        assert fold.train["ts"].max() <= last_train  # type: ignore[operator]
    config = TuningConfig(space={"ease": {"l2": [1e-3, 300.0]}}, folds=2)
    tuned = tune("ease", split.train, config, items=shop[1])
    assert [params for params, _ in tuned.trials] == [{"l2": 1e-3}, {"l2": 300.0}]
    best_score = max(score for _, score in tuned.trials)
    assert tuned.best_score == best_score
    assert tuned.best.model_dump()["l2"] in (1e-3, 300.0)


def test_tuning_without_validation_users(shop: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    tiny = shop[0].sort("ts").head(3)
    with pytest.raises(DataError, match="no fold has validation users"):
        tune("ease", tiny, TuningConfig(folds=1))
