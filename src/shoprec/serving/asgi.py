"""Entry point for uvicorn (``shoprec serve``): the app built from the environment.

uvicorn imports ``shoprec.serving.asgi:app_from_environment`` as a factory in every worker
process; ``shoprec serve`` passes the config file and workspace through the environment.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import sys
from pathlib import Path

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from shoprec.config import load_settings
from shoprec.index import search_on_one_thread

__all__ = ["CONFIG_ENV", "app_from_environment", "configure_logging"]

CONFIG_ENV = "SHOPREC_SERVE_CONFIG"


def configure_logging(workspace: Path, *, background: bool = True) -> None:
    """Service logs on stderr; each scoring request as one JSON line in
    ``<workspace>/logs/score.jsonl`` (for tracking what was scored, and when).

    With ``background`` (the server) the score log is written by a thread of its own, so a
    request never waits on the file; it is flushed when the process exits.
    """
    service = logging.getLogger("shoprec.serving")
    if not service.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        service.addHandler(handler)
        service.setLevel(logging.INFO)
    scores = logging.getLogger("shoprec.score")
    if not scores.handlers:
        (workspace / "logs").mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(workspace / "logs" / "score.jsonl", encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(message)s"))
        if background:
            lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            writer = logging.handlers.QueueListener(lines, to_file)
            writer.start()
            atexit.register(writer.stop)
            scores.addHandler(logging.handlers.QueueHandler(lines))
        else:
            scores.addHandler(to_file)
        scores.setLevel(logging.INFO)
        scores.propagate = False


def app_from_environment() -> FastAPI:
    from shoprec.serving.app import create_app

    # One request is small work: BLAS and FAISS threads would only fight the other requests
    # (and the other worker processes) for the cores.
    threadpool_limits(1)
    search_on_one_thread()
    # The worker thread and the request loop share one GIL: with Python's default 5 ms switch
    # interval a request waits up to 5 ms each time it hands the GIL over (a socket write, a
    # NumPy call), whenever the worker is busy folding in events.
    sys.setswitchinterval(0.0005)
    config = os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(config) if config else None)
    configure_logging(settings.workspace)
    return create_app(settings)
