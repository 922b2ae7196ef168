"""Point-in-time features for the ranker, and the stores that serve them."""

from shoprec.features.build import FeatureConfig, FeatureTables, compute_features

__all__ = ["FeatureConfig", "FeatureTables", "compute_features"]
