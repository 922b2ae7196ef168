"""Optional dependencies: the extras of ``pyproject.toml`` and the one error that names them.

The core install runs the embedded default (``shoprec demo``: workspace files, the in-process
bus and live state, exact vector search, LightGBM's own predict). Heavier backends are extras:

=========  ======================  ==============================================
extra      installs                needed for
=========  ======================  ==============================================
redis      redis-py (hiredis)      ``redis://`` and ``rediss://`` bus and state URLs
compiled   lleaves, llvmlite       the ranker compiled to machine code (faster
                                   serving; without it LightGBM predicts)
faiss      faiss-cpu               approximate (HNSW) search over large catalogues
                                   (without it: exact search with NumPy)
text       torch, sentence-        the ``minilm`` embedding provider
           transformers
=========  ======================  ==============================================

A setting that asks for a missing extra fails with one line naming it
(:func:`require`); a speed-up that is merely absent is said once in the log by its user.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from shoprec.exceptions import MissingExtraError

__all__ = ["install_hint", "is_installed", "require"]


def install_hint(extra: str) -> str:
    """How to install ``extra``: ``pip install 'shoprec[redis]'``."""
    return f"pip install 'shoprec[{extra}]'"


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported (imports it)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(module: str, extra: str, *, needed_by: str) -> ModuleType:
    """``module``, imported; :class:`~shoprec.exceptions.MissingExtraError` when it is not
    installed, in one line: ``redis://cache:6379/0 needs the redis extra: pip install
    'shoprec[redis]'``. ``needed_by`` names the setting or URL that asked for it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{needed_by} needs the {extra} extra: {install_hint(extra)}"
        ) from None
