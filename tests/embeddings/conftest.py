"""Fixtures of the embedding tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.embeddings.fake_service import FakeEnrichmentService


@pytest.fixture
def enrichment_service() -> Iterator[FakeEnrichmentService]:
    """A fake enrichment service on 127.0.0.1, stopped at teardown (see ``fake_service``)."""
    with FakeEnrichmentService() as service:
        yield service
