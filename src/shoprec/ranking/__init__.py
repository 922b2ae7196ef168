"""The second stage: candidates from the generators, re-ranked with features, then rules."""

import shoprec.models  # noqa: F401  (the generators register first)
from shoprec.ranking.two_stage import Ranker, TwoStageConfig, TwoStageModel

__all__ = ["Ranker", "TwoStageConfig", "TwoStageModel"]
