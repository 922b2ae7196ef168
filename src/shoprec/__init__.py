"""shoprec: a self-hosted recommendation engine for shops and marketplaces.

The public API is what ``__all__`` lists; everything else may change without notice.
"""

from shoprec.config import EventWeights, IngestConfig, Settings, load_settings
from shoprec.data.dataset import Dataset, IdMap
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.report import LoadReport
from shoprec.data.summary import lake_summary
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.exceptions import (
    ConfigError,
    DataError,
    LakeError,
    MissingExtraError,
    NotFittedError,
    ShoprecError,
    SourceError,
    UnknownFormatError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Dataset",
    "EventWeights",
    "IdMap",
    "IngestConfig",
    "Lake",
    "LakeError",
    "LoadReport",
    "MissingExtraError",
    "NotFittedError",
    "Settings",
    "ShopSpec",
    "ShoprecError",
    "SourceError",
    "UnknownFormatError",
    "__version__",
    "generate_shop",
    "ingest",
    "lake_summary",
    "load_settings",
]
