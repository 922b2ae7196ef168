"""Who may read and write what: the API keys, and the storefront's signed sign-in cookie.

- An API key is compared in constant time as UTF-8 bytes (any header value can be compared:
  a non-ASCII key is simply wrong, never an error) and never logged.
- The storefront's sign-in puts a *signed* user id in its cookie: ``<id>.<expiry>.<signature>``,
  an HMAC-SHA256 over the id and the expiry with a secret that lives in
  ``<workspace>/secrets/session.key`` (created on first use, readable by its owner only, shared
  by every worker process of the server). A cookie that was typed, edited or is out of date
  names nobody.
- HTML pages carry headers that keep them from being framed, sniffed or made to run scripts
  from elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "HTML_HEADERS",
    "SESSION_SECONDS",
    "SessionSigner",
    "key_matches",
    "session_secret",
]

SESSION_SECONDS = 7 * 24 * 3600
SECRET_BYTES = 32
HTML_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def key_matches(given: str | None, keys: Sequence[str]) -> bool:
    """Whether ``given`` is one of ``keys``; every key is compared, in constant time."""
    if given is None:
        return False
    raw = given.encode("utf-8", "surrogatepass")
    found = False
    for known in keys:
        found |= hmac.compare_digest(raw, known.encode("utf-8", "surrogatepass"))
    return found


def session_secret(workspace: Path) -> bytes:
    """The workspace's session secret, created on first use (atomically: worker processes
    starting at once all end up with the same one)."""
    path = workspace / "secrets" / "session.key"
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        draft = path.with_name(f".session.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(SECRET_BYTES))
        try:
            os.link(draft, path)  # fails if another process got there first: theirs counts
        except FileExistsError:
            pass
        finally:
            draft.unlink()
        secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} holds {len(secret)} bytes; a session secret needs 32")
    return secret


class SessionSigner:
    """Signs a user id into a cookie value and reads it back."""

    def __init__(self, secret: bytes, *, seconds: int = SESSION_SECONDS) -> None:
        self._secret = secret
        self.seconds = seconds

    def _signature(self, payload: bytes) -> str:
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, user_id: str, *, now: float | None = None) -> str:
        name = base64.urlsafe_b64encode(user_id.encode("utf-8")).rstrip(b"=").decode("ascii")
        expiry = int((time.time() if now is None else now) + self.seconds)
        payload = f"{name}.{expiry}"
        return f"{payload}.{self._signature(payload.encode('ascii'))}"

    def user(self, value: str | None, *, now: float | None = None) -> str | None:
        """The user id a cookie value names, or None if it is not one this server signed (or
        it is out of date)."""
        if not value or len(value) > 1024:
            return None
        name, _, rest = value.partition(".")
        expiry, _, signature = rest.partition(".")
        if not (name and expiry.isdigit() and signature):
            return None
        payload = f"{name}.{expiry}".encode("ascii", "replace")
        expected = self._signature(payload).encode("ascii")
        if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
            return None
        if int(expiry) < (time.time() if now is None else now):
            return None
        try:
            return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
