"""Source adapters, one per format, each registered under its ``--format`` name."""

from shoprec.data.formats import (  # noqa: F401  (importing registers the adapters)
    ab_events,
    amazon_seq,
    cars,
    copurchase_txt,
    instacart,
    movielens,
    online_retail,
    tabular,
)
from shoprec.data.formats.base import Adapter, SourceData, adapter_names, get_adapter

__all__ = ["Adapter", "SourceData", "adapter_names", "get_adapter"]
