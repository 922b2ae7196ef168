from __future__ import annotations

import shoprec
from shoprec import exceptions


def test_all_names_exist_and_are_sorted() -> None:
    for name in shoprec.__all__:
        assert hasattr(shoprec, name), name
    assert shoprec.__all__ == sorted(shoprec.__all__)


def test_every_error_is_a_shoprec_error() -> None:
    errors = [getattr(exceptions, n) for n in exceptions.__all__ if n.endswith("Error")]
    assert len(errors) == 7
    for error in errors:
        assert issubclass(error, shoprec.ShoprecError)
