"""The ranker compiled to machine code for serving, by lleaves.

LightGBM's own ``predict`` walks its trees in a general-purpose loop; for one request's few
hundred candidates that is most of a request's ranking time. lleaves compiles the model's trees
(LightGBM's text format) with LLVM into a function with the same predictions, about ten times
faster at that size. The object file is cached beside the run, written atomically, so every API
worker but the first loads it in milliseconds. Its name carries the lleaves version and the
processor it was compiled for (LLVM's name and features of the host): a run folder shared by
machines of different processors keeps one file for each, and none runs code built for another
(an instruction the processor lacks would kill the server).

lleaves and llvmlite are the ``compiled`` extra (``pip install 'shoprec[compiled]'``). Without
them the ranker is not compiled and LightGBM's own predict serves it, with the same scores; the
log says so once per process.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.compat import install_hint
from shoprec.files import replaced_atomically

__all__ = ["compile_ranker", "host_processor"]

log = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]


def host_processor() -> str:
    """The processor LLVM compiles for here: its name and a digest of its features
    (``skylake-3f9a0c1e``)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten()
    digest = hashlib.blake2b(features.encode(), digest_size=4).hexdigest()
    return f"{llvm.get_host_cpu_name()}-{digest}"


@functools.cache
def _say_not_installed() -> None:
    log.warning(
        "the compiled extra (lleaves) is not installed: LightGBM's own predict serves the "
        "ranker, slower per request (%s)",
        install_hint("compiled"),
    )


def compile_ranker(booster: Any, cache: Path | None = None) -> Predict | None:
    """A function with ``booster``'s predictions (rows × features in, one score per row out),
    compiled; None when it cannot be (the caller keeps LightGBM's own predict), which the log
    says (once when lleaves is not installed). ``cache`` is where the machine code is kept
    between processes."""
    try:
        import lleaves
    except ImportError:
        _say_not_installed()
        return None
    try:
        if cache is not None:  # machine code of another lleaves version or processor: not reused
            version = importlib.metadata.version("lleaves")
            cache = cache.with_name(f"{cache.stem}-{version}-{host_processor()}{cache.suffix}")
        with tempfile.TemporaryDirectory(prefix="shoprec-ranker-") as folder:
            text = Path(folder) / "ranker.txt"
            text.write_text(booster.model_to_string(), encoding="utf-8")
            model = lleaves.Model(model_file=str(text))
            if cache is not None and cache.is_file():
                model.compile(cache=str(cache))
            else:
                built = Path(folder) / "ranker.o"
                model.compile(cache=str(built))
                if cache is not None:  # a read-only run folder: compiled again next time
                    with contextlib.suppress(OSError), replaced_atomically(cache) as temporary:
                        temporary.write_bytes(built.read_bytes())
    except Exception as exc:  # an LLVM that cannot compile here: LightGBM still can
        log.warning("the ranker could not be compiled (%s); LightGBM's predict serves", exc)
        return None

    def predict(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(matrix, np.float64), n_jobs=1))

    return predict
