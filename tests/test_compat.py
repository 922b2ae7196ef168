"""The optional extras: a setting that needs a missing one says so in one line; the embedded
default runs without any of them."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.compat import install_hint, is_installed, require
from shoprec.exceptions import ConfigError, MissingExtraError, ShoprecError
from shoprec.index import ExactIndex, build_index, search_on_one_thread
from shoprec.stream.bus import open_bus
from shoprec.stream.state import open_state

# Each extra's modules, as `import` names them.
EXTRA_MODULES = {
    "redis": ("redis",),
    "compiled": ("lleaves", "llvmlite"),
    "faiss": ("faiss",),
}


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` raise ImportError, as when the extra is not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_require_names_the_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "lleaves")
    with pytest.raises(MissingExtraError) as raised:
        require("lleaves", "compiled", needed_by="serving.compiled")
    assert str(raised.value) == (
        "serving.compiled needs the compiled extra: pip install 'shoprec[compiled]'"
    )
    assert isinstance(raised.value, ConfigError)
    assert isinstance(raised.value, ShoprecError)
    assert not is_installed("lleaves")
    assert require("json", "none", needed_by="-").dumps([]) == "[]"


def test_install_hint() -> None:
    assert install_hint("redis") == "pip install 'shoprec[redis]'"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("rediss://user:s3cret@cache:6380/2?stream=s", "rediss://user:***@cache:6380/2?stream=s"),
    ],
)
def test_a_redis_bus_without_the_redis_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, shown: str
) -> None:
    _block(monkeypatch, "redis", "redis.connection")
    with pytest.raises(MissingExtraError) as raised:
        open_bus(url)
    message = str(raised.value)
    assert (
        message == f"the event bus at {shown} needs the redis extra: pip install 'shoprec[redis]'"
    )
    assert "\n" not in message
    assert "s3cret" not in message


def test_the_command_line_prints_the_missing_extra_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _block(monkeypatch, "redis", "redis.connection")
    args = ["consume", "--bus", "redis://cache:6379/0", "--state", "memory://"]
    result = CliRunner().invoke(app, [*args, "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: the event bus at redis://cache:6379/0 needs the redis extra: "
        "pip install 'shoprec[redis]'"
    )


def test_a_redis_state_without_the_redis_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "redis", "redis.connection")
    with pytest.raises(
        MissingExtraError, match=r"^the live state at redis://h:1/0 needs the redis"
    ):
        open_state("redis://h:1/0")


def test_memory_backends_need_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "redis", "redis.connection")
    bus = open_bus("memory://?max_backlog=10")
    bus.close()
    state = open_state("memory://?recent=5")
    assert state.recent_limit == 5


def test_large_catalogues_are_searched_exactly_without_faiss(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from shoprec import index

    _block(monkeypatch, "faiss")
    index._say_not_installed.cache_clear()
    vectors = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="shoprec.index"):
        first = build_index(vectors, exact_below=100)
        second = build_index(vectors, exact_below=100)
    assert isinstance(first, ExactIndex)
    assert isinstance(second, ExactIndex)
    said = [r.getMessage() for r in caplog.records if "faiss extra" in r.getMessage()]
    assert len(said) == 1
    assert "pip install 'shoprec[faiss]'" in said[0]
    items, _ = first.search(vectors[0], 5)
    assert items[0] == int(np.argmax(vectors @ vectors[0]))
    with pytest.raises(MissingExtraError, match="needs the faiss extra"):
        index.FaissIndex.build(vectors)
    index._say_not_installed.cache_clear()


def test_the_api_starts_its_searches_on_one_thread_without_faiss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _block(monkeypatch, "faiss")
    search_on_one_thread()  # what serving/asgi.py calls at start-up: nothing to do, no error


def test_no_extra_is_a_core_dependency() -> None:
    project = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    )["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~;\s]", r, maxsplit=1)[0].lower() for r in requirements}

    core = names(project["dependencies"])
    for extra in ("redis", "compiled", "faiss", "text"):
        assert not core & names(project["optional-dependencies"][extra]), extra


def test_the_core_install_imports_every_module_without_the_extras() -> None:
    """Every shoprec module imports, and the embedded default's backends open, with every
    optional extra's modules missing (a fresh interpreter: nothing imported before)."""
    blocked = sorted(module for modules in EXTRA_MODULES.values() for module in modules)
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        for name in {blocked!r}:
            sys.modules[name] = None
        import shoprec
        names = [m.name for m in pkgutil.walk_packages(shoprec.__path__, "shoprec.")]
        for name in names:
            importlib.import_module(name)
        from shoprec.stream.bus import open_bus
        from shoprec.stream.state import open_state
        open_bus("memory://").close()
        open_state("memory://")
        print(len(names))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip()) > 50
