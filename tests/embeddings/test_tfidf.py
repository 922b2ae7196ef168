from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoprec.config import load_settings
from shoprec.embeddings import EmbeddingError, EmbeddingProvider
from shoprec.embeddings.enrich import open_provider
from shoprec.embeddings.text import entity_texts
from shoprec.embeddings.tfidf import TfidfProvider
from shoprec.exceptions import DataError, LakeError, NotFittedError
from tests.embeddings.shop import ingest_instacart

TEXTS = [
    "organic whole milk",
    "semi skimmed milk",
    "dark chocolate bar",
    "milk chocolate bar",
    "sparkling mineral water",
    "still spring water",
]


def test_fit_embeds_in_a_fixed_size_and_is_a_provider() -> None:
    provider = TfidfProvider(dimensions=3).fit(TEXTS)
    assert isinstance(provider, EmbeddingProvider)
    vectors = provider.embed(["whole milk", "chocolate", "unknown words only"])
    assert vectors.shape == (3, 3)
    assert vectors.dtype == np.float32
    assert provider.dim == 3
    assert not vectors[2].any()  # no known word: nothing to say


def test_version_depends_on_the_corpus_and_parameters_only() -> None:
    first = TfidfProvider(dimensions=3).fit(TEXTS)
    again = TfidfProvider(dimensions=3).fit(list(TEXTS))
    assert first.version == again.version
    np.testing.assert_array_equal(first.embed(TEXTS), again.embed(TEXTS))
    assert TfidfProvider(dimensions=3).fit([*TEXTS, "oat milk"]).version != first.version
    assert TfidfProvider(dimensions=4).fit(TEXTS).version != first.version


def test_small_corpus_keeps_the_tfidf_columns() -> None:
    provider = TfidfProvider(dimensions=64).fit(["milk", "water"])
    assert provider.dim == 2
    assert provider.embed(["milk"]).shape == (1, 2)


def test_errors() -> None:
    with pytest.raises(EmbeddingError, match="hold no words"):
        TfidfProvider().fit(["", " ", "a"])
    with pytest.raises(NotFittedError, match="not fitted"):
        TfidfProvider().embed(["milk"])
    with pytest.raises(NotFittedError):
        _ = TfidfProvider().version


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    provider = TfidfProvider(dimensions=3).fit(TEXTS)
    provider.save(tmp_path / "tfidf.pkl")
    loaded = TfidfProvider.load(tmp_path / "tfidf.pkl")
    assert loaded.version == provider.version
    np.testing.assert_array_equal(loaded.embed(TEXTS), provider.embed(TEXTS))
    (tmp_path / "broken.pkl").write_bytes(b"not a pickle")
    with pytest.raises(LakeError, match=r"broken\.pkl: cannot read the fitted TF-IDF provider"):
        TfidfProvider.load(tmp_path / "broken.pkl")


def test_open_provider_reuses_the_saved_fit_until_refit(shared_data: Path, workspace: Path) -> None:
    items = ingest_instacart(shared_data, workspace, products=400)
    settings = load_settings(workspace=workspace)
    first = open_provider(settings, workspace, items)
    assert (workspace / "embeddings" / "tfidf.pkl").is_file()
    # A changed catalogue does not refit by default: the same vector space.
    fewer = items.head(300)
    assert open_provider(settings, workspace, fewer).version == first.version
    assert open_provider(settings, workspace, None).version == first.version
    refitted = open_provider(settings, workspace, fewer, refit=True)
    assert refitted.version != first.version
    assert open_provider(settings, workspace, items).version == refitted.version
    np.testing.assert_array_equal(
        refitted.embed(entity_texts(items.head(5))),
        TfidfProvider(64).fit(entity_texts(fewer)).embed(entity_texts(items.head(5))),
    )
    # Other sizes in the config mean another fit.
    smaller = settings.model_copy(
        update={"embeddings": settings.embeddings.model_copy(update={"tfidf_dimensions": 8})}
    )
    assert open_provider(smaller, workspace, items).dim == 8


def test_open_provider_without_a_fit_or_catalogue(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no fitted TF-IDF provider and no catalogue"):
        open_provider(load_settings(workspace=tmp_path), tmp_path, None)
