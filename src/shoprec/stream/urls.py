"""The URLs that open the event bus and the live state, taken apart one way for both.

``memory://?name=value`` names the embedded backend: no host, no path, only options.
``redis://host:port/db?name=value`` (or ``rediss://``) names Redis: the backend's own options
and redis-py's connection options (``socket_timeout=5``) share the query. Redis needs the
``redis`` extra; without it a Redis URL raises :class:`~shoprec.exceptions.MissingExtraError`
naming the extra to install.

A swap point declares a :class:`UrlSyntax` (what it is called in messages and its options on
each scheme, each an ``int`` or a ``str``) and builds its object from what
:meth:`UrlSyntax.parse` returns. A bad URL raises :class:`~shoprec.exceptions.ConfigError`
with a one-line message: the URL (its password hidden), what is wrong with it and what is
supported.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from shoprec.compat import require
from shoprec.exceptions import ConfigError

__all__ = ["ParsedUrl", "UrlSyntax", "redact_url", "redis_connection_options"]

Backend = Literal["memory", "redis"]
OptionKinds = Mapping[str, type[int] | type[str]]

_BACKENDS: dict[str, Backend] = {"memory": "memory", "redis": "redis", "rediss": "redis"}


@functools.cache
def redis_connection_options() -> frozenset[str]:
    """redis-py's options a ``redis://`` URL may carry: the database is the path, replies are
    RESP2."""
    connection = require("redis.connection", "redis", needed_by="a redis:// URL")
    return frozenset(connection.URL_QUERY_ARGUMENT_PARSERS) - {"db", "protocol"}


def redact_url(url: str) -> str:
    """The URL without its password, fit for error messages (also when it does not parse)."""
    scheme, separator, rest = url.partition("://")
    end = min((rest.find(mark) for mark in "/?#" if mark in rest), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{separator}{user}:***@{host}{rest[end:]}"


@dataclass(frozen=True)
class ParsedUrl:
    """A URL taken apart: its backend, its options (converted) and, for Redis, the URL that
    redis-py connects to (the query holding only redis-py's options)."""

    backend: Backend
    options: dict[str, Any]
    connection_url: str = ""


@dataclass(frozen=True)
class UrlSyntax:
    """The URLs one swap point opens: ``what`` names it in messages (``"event bus"``);
    ``memory`` and ``redis`` are its own options on each scheme, by name, each ``int`` (a
    positive integer) or ``str`` (a non-empty name, stripped)."""

    what: str
    memory: OptionKinds
    redis: OptionKinds

    def parse(self, url: str, defaults: Mapping[str, Any] | None = None) -> ParsedUrl:
        """``url`` taken apart; ``defaults`` are options given beside it (by code, taken as they
        are), which the URL's own query overrides. :class:`ConfigError` for an unknown scheme or
        option, an option given twice or not of its kind, a host or path on ``memory://``, and
        no host or a port or database that is not a number on ``redis://``."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise self.error(url, str(exc)) from None
        backend = _BACKENDS.get(parts.scheme.lower())
        if backend is None:
            raise self.error(url, f"unknown scheme {parts.scheme.lower()!r}")
        if backend == "memory" and (parts.netloc or parts.path.strip("/")):
            raise self.error(url, "memory:// takes no host or path; options go in the query")
        if backend == "redis":
            require("redis", "redis", needed_by=f"the {self.what} at {redact_url(url)}")
            self._check_redis_address(url, parts)
        query = self._query(url, parts.query)
        options = self._options(url, backend, query, defaults or {})
        if backend == "memory":
            return ParsedUrl(backend, options)
        ours = self.redis
        redis_query = urlencode([(name, text) for name, text in query.items() if name not in ours])
        return ParsedUrl(backend, options, urlunsplit(parts._replace(query=redis_query)))

    def error(self, url: str, problem: str) -> ConfigError:
        """The error for a bad ``url``: the URL (password hidden), ``problem``, what works."""
        return ConfigError(
            f"{self.what} URL {redact_url(url)!r}: {problem.rstrip('.')}; supported: "
            f"memory:// (options {', '.join(self.memory)}) and redis://host:port/db or "
            f"rediss://… (options {', '.join(self.redis)} and redis-py's connection options "
            "such as socket_timeout)"
        )

    def _check_redis_address(self, url: str, parts: SplitResult) -> None:
        if not parts.hostname:
            raise self.error(url, "no host")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise self.error(url, f"bad port ({exc})") from None
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise self.error(url, f"the database must be a number, got {database!r}")

    def _query(self, url: str, query: str) -> dict[str, str]:
        """The query's options in order; one given twice raises ConfigError."""
        options: dict[str, str] = {}
        for name, text in parse_qsl(query, keep_blank_values=True):
            if name in options:
                raise self.error(url, f"option {name!r} is given twice")
            options[name] = text
        return options

    def _options(
        self, url: str, backend: Backend, query: Mapping[str, str], defaults: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The defaults, overridden by the query's own options, each converted to its kind; an
        unknown option raises ConfigError (on Redis the query may also hold redis-py's)."""
        kinds = self.memory if backend == "memory" else self.redis
        connection = redis_connection_options() if backend == "redis" else frozenset()
        unknown = (set(defaults) - set(kinds)) | (set(query) - set(kinds) - connection)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise self.error(url, f"unknown option(s) {names} for {backend}://")
        options = dict(defaults)
        for name, kind in kinds.items():
            if name not in query:
                continue
            try:
                value = kind(query[name].strip())
            except ValueError:
                value = 0
            if not value or (isinstance(value, int) and value < 0):
                wanted = "a positive integer" if kind is int else "a non-empty name"
                raise self.error(url, f"{name} must be {wanted}, got {query[name]!r}")
            options[name] = value
        return options
