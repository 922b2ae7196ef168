from __future__ import annotations

import ast
import re
from pathlib import Path

import shoprec
from shoprec import exceptions


def test_all_names_exist_and_are_sorted() -> None:
    for name in shoprec.__all__:
        assert hasattr(shoprec, name), name
    assert shoprec.__all__ == sorted(shoprec.__all__)


def test_the_errors_a_caller_catches_are_public() -> None:
    """The errors the public functions raise, and the one a setting that needs a missing
    extra raises (``shoprec.compat.require``), are importable from ``shoprec``."""
    public = {
        "ConfigError",
        "DataError",
        "LakeError",
        "MissingExtraError",
        "NotFittedError",
        "ShoprecError",
        "SourceError",
        "UnknownFormatError",
    }
    assert public <= set(shoprec.__all__)
    for name in public:
        assert getattr(shoprec, name) is getattr(exceptions, name)


def test_every_error_is_a_shoprec_error() -> None:
    errors = [getattr(exceptions, n) for n in exceptions.__all__ if n.endswith("Error")]
    assert len(errors) == 16
    for error in errors:
        assert issubclass(error, shoprec.ShoprecError)


def test_the_docstring_draws_the_whole_error_tree() -> None:
    """Each error of exceptions.py stands in the drawn tree under its parent."""
    drawn: dict[str, int] = {}  # name -> depth in the drawing
    lines = (exceptions.__doc__ or "").splitlines()
    for line in lines:
        match = re.match(r"^\s{4}([│ ]*)(?:[├└]── )?([A-Z]\w*Error)\b", line)
        if match:
            drawn[match.group(2)] = len(match.group(1)) // 4 + ("──" in line)
    errors = {n: getattr(exceptions, n) for n in exceptions.__all__ if n.endswith("Error")}
    assert set(errors) <= set(drawn), set(errors) - set(drawn)
    for name, error in errors.items():
        parent = error.__mro__[1].__name__
        if name != "ShoprecError":
            assert drawn[name] == drawn[parent] + 1, (name, parent)
    # the one error drawn but defined elsewhere is the server's (shoprec.serving.registry)
    assert set(drawn) - set(errors) == {"NotReadyError"}


def test_errors_are_defined_in_exceptions() -> None:
    """No public error class is defined outside exceptions.py (the serving package's are
    moving there with its reshaping, issue 16)."""
    source = Path(shoprec.__file__).parent
    elsewhere = [
        f"{path.relative_to(source)}:{node.name}"
        for path in source.rglob("*.py")
        if path.name != "exceptions.py" and "serving" not in path.relative_to(source).parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and node.name.endswith("Error")
        and not node.name.startswith("_")
    ]
    assert not elsewhere
