"""What the benchmark scripts share."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data(argument: str | None) -> Path:
    """``--shared-data``, else ``$SHOPREC_SHARED_DATA``, else ``../shared/data`` beside the
    repository."""
    if argument:
        return Path(argument)
    if os.environ.get("SHOPREC_SHARED_DATA"):
        return Path(os.environ["SHOPREC_SHARED_DATA"])
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"
