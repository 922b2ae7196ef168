"""The errors shoprec raises on purpose.

Every error a user can cause derives from :class:`ShoprecError`, so the CLI and the API can turn
any of them into one clear line (or a 4xx/503) instead of a traceback::

    ShoprecError
    ├── ConfigError                a config file, setting or URL is invalid
    │   └── MissingExtraError      a setting needs an optional extra that is not installed
    ├── DataError                  input data cannot be used as a whole
    │   ├── SourceError            a source file is unreadable, empty where it must not be,
    │   │                          or lacks required columns (names the file)
    │   └── UnknownFormatError     no adapter has the requested format name
    ├── LakeError                  the workspace lake is missing or inconsistent
    ├── NotFittedError             a model or dataset is used before it was built
    ├── EmbeddingError             an embedding provider could not embed a batch
    │   └── HttpEmbeddingError     the remote enrichment service failed (url, status, attempts)
    │       └── CircuitOpenError   its circuit breaker is open: nothing was sent
    ├── BusError                   the event bus cannot do what was asked (closed, locked)
    │   └── BusUnavailableError    it cannot take events right now (HTTP 503)
    │       └── BacklogFullError   publishing would exceed its backlog of unacknowledged events
    ├── StateError                 the live state failed to answer (HTTP 503)
    │   └── StateUnavailableError  it cannot be reached (no connection, or no answer in time)
    └── NotReadyError              the server has no run loaded yet (HTTP 503)

(``NotReadyError`` lives in :mod:`shoprec.serving.registry`.)

Malformed *rows* are not errors: adapters reject them into the load report and go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import ValidationError

__all__ = [
    "BacklogFullError",
    "BusError",
    "BusUnavailableError",
    "CircuitOpenError",
    "ConfigError",
    "DataError",
    "EmbeddingError",
    "HttpEmbeddingError",
    "LakeError",
    "MissingExtraError",
    "NotFittedError",
    "ShoprecError",
    "SourceError",
    "StateError",
    "StateUnavailableError",
    "UnknownFormatError",
    "describe_validation_error",
]


class ShoprecError(Exception):
    """Base of every error shoprec raises deliberately."""


class ConfigError(ShoprecError):
    """A configuration file, setting or URL is invalid."""


class MissingExtraError(ConfigError):
    """A setting or URL needs an optional dependency that is not installed; the message names
    the extra to install (see :func:`shoprec.compat.require`)."""


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


class EmbeddingError(ShoprecError):
    """A provider could not embed some input (the message says which and why)."""


class HttpEmbeddingError(EmbeddingError):
    """A call to the enrichment service failed; ``status`` is the last HTTP status, if any."""

    def __init__(
        self, message: str, *, url: str, status: int | None, reason: str, attempts: int
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.reason = reason
        self.attempts = attempts


class CircuitOpenError(HttpEmbeddingError):
    """The circuit breaker is open: the call was not sent. ``until`` is when it half-opens
    (``None`` while a trial call after the cooldown is in flight)."""

    def __init__(self, message: str, *, url: str, reason: str, until: datetime | None) -> None:
        super().__init__(message, url=url, status=None, reason=reason, attempts=0)
        self.until = until


class BusError(ShoprecError):
    """The event bus cannot do what was asked (closed, locked by another process, ...)."""


class BusUnavailableError(BusError):
    """The bus cannot take events right now; try again later (the API answers 503)."""


class BacklogFullError(BusUnavailableError):
    """Publishing would exceed the bus's maximum backlog of unacknowledged events."""


class StateError(ShoprecError):
    """The live state failed to answer (Redis refused a command); the server answers 503."""


class StateUnavailableError(StateError):
    """The live state cannot be reached (no connection, or no answer in time)."""


def describe_validation_error(exc: ValidationError, *, skip: int = 0, root: str = "") -> str:
    """One line naming each invalid field (``a.b: problem; c: problem``).

    ``skip`` drops leading location parts (the tag of a discriminated union); ``root`` names a
    problem with no field left.
    """
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc'][skip:]) or root}: {err['msg']}"
        for err in exc.errors()
    )
