"""Serving: the HTTP API, the storefront, the registry of published runs (DESIGN §5, §8)."""

from shoprec.serving.engine import Engine, RecommendationList
from shoprec.serving.registry import Registry

__all__ = ["Engine", "RecommendationList", "Registry"]
