"""The errors shoprec raises on purpose.

Every error a user can cause derives from :class:`ShoprecError`, so the CLI and the API can turn
any of them into one clear line (or a 4xx) instead of a traceback::

    ShoprecError
    ├── ConfigError            a config file or setting is invalid
    ├── DataError              input data cannot be used as a whole
    │   ├── SourceError        a source file is unreadable, empty where it must not be,
    │   │                      or lacks required columns (names the file)
    │   └── UnknownFormatError no adapter has the requested format name
    ├── LakeError              the workspace lake is missing or inconsistent
    ├── NotFittedError         a model or dataset is used before it was built
    ├── EmbeddingError         an embedding provider could not embed a batch
    │   └── HttpEmbeddingError the remote enrichment service failed (url, status, attempts)
    │       └── CircuitOpenError   its circuit breaker is open: nothing was sent
    └── NotReadyError          the server has no run loaded yet (HTTP 503)

(``EmbeddingError`` lives in :mod:`shoprec.embeddings`, ``NotReadyError`` in
:mod:`shoprec.serving.registry`.)

Malformed *rows* are not errors: adapters reject them into the load report and go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "ConfigError",
    "DataError",
    "LakeError",
    "NotFittedError",
    "ShoprecError",
    "SourceError",
    "UnknownFormatError",
    "describe_validation_error",
]


class ShoprecError(Exception):
    """Base of every error shoprec raises deliberately."""


class ConfigError(ShoprecError):
    """A configuration file or setting is invalid."""


class DataError(ShoprecError):
    """Input data cannot be used as a whole."""


class SourceError(DataError):
    """A source file cannot be read as the requested format.

    The message always starts with the file's path, so one line tells the user where to look.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class UnknownFormatError(DataError):
    """No adapter is registered under the requested format name."""


class LakeError(ShoprecError):
    """The workspace lake is missing or inconsistent."""


class NotFittedError(ShoprecError):
    """An object that must be built first was used before it was built."""


def describe_validation_error(exc: ValidationError, *, skip: int = 0, root: str = "") -> str:
    """One line naming each invalid field (``a.b: problem; c: problem``).

    ``skip`` drops leading location parts (the tag of a discriminated union); ``root`` names a
    problem with no field left.
    """
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc'][skip:]) or root}: {err['msg']}"
        for err in exc.errors()
    )
