"""Entity embeddings: providers (TF-IDF, MiniLM, a remote HTTP service, attributes) behind one
Protocol, and a cache keyed by (provider, version, content hash) so only new or changed
entities reach a provider."""

from shoprec.embeddings.protocol import (
    EmbeddingError,
    EmbeddingProvider,
    FakeProvider,
    content_hash,
)

__all__ = ["EmbeddingError", "EmbeddingProvider", "FakeProvider", "content_hash"]
