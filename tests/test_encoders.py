"""Embedding backends (exercise/embedding.py): choosing one, recording it, parity with fp32, and no model load
when every chunk and question is already in the cache.

Only the tests marked slow load the real model (once per backend); bench/encoders.py measures speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from exercise import embedding
from exercise.chunking import FixedSizeChunker
from exercise.config import Config
from exercise.contracts import Document
from exercise.embedding import BACKENDS, SUPPORTED_MODEL, EmbeddingCache, Embedder, pick_backend
from exercise.pipeline import build_pipeline
from exercise.retrieval import DenseRetriever

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    Document("w/backups.md", "backups.md", "# Backups\n\nEvery night a snapshot of each widget's configuration is "
             "copied to a second site. Snapshots are kept for thirty days.\n", "guide", "widgets", "2026-01-01",
             "current"),
    Document("w/errors.md", "errors.md", "# Errors\n\n## WX-4408 QuotaExceeded\n\nThe account has more widgets than "
             "its quota allows.\n", "reference", "widgets", "2026-01-01", "current"),
]
QUESTION = "are snapshots kept for thirty days"


class Counting:
    """Hashed bag-of-words vectors under any (name, backend); counts the texts it encodes."""

    def __init__(self, name: str = "fake", backend: str = "fake", dim: int = 32):
        self.name, self.backend, self.dim, self.texts = name, backend, dim, 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        vectors = np.full((len(texts), self.dim), 1e-3, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                vectors[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def chunks():
    return [chunk for document in DOCS for chunk in FixedSizeChunker(size=10_000).chunk(document)]


# Choosing and recording a backend


def test_an_unknown_backend_is_refused_naming_the_choices(tmp_path: Path) -> None:
    choices = r"'int4'.*auto, fp32, bf16, cuda, mps.*embedding_backend="
    with pytest.raises(ValueError, match=choices):
        Embedder(backend="int4")
    with pytest.raises(ValueError, match=choices):  # refused before anything is built, whatever the retriever
        build_pipeline(Config(retriever="bm25", embedding_backend="int4", cache_dir=str(tmp_path)), DOCS)
    assert Config().with_overrides(["embedding_backend=bf16"]).embedding_backend == "bf16"


def test_auto_picks_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding.os.path, "exists", lambda path: False)  # no NVIDIA driver
    monkeypatch.setattr(embedding.sys, "platform", "linux")
    for has_bf16, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(embedding, "cpu_has_bf16", lambda: has_bf16)
        assert pick_backend("auto") == expected
    assert pick_backend("fp32") == "fp32" and Embedder(backend="fp32").backend == "fp32"


@pytest.mark.parametrize("asked", ["auto", "fp32"])
def test_the_run_records_the_backend_used_never_auto(asked: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      fixture_corpus: Path, fixture_golden: Path) -> None:
    from harness.report import describe_index
    from harness.runner import start_run

    monkeypatch.setenv("RAGKATA_RUNS_DIR", str(tmp_path / "runs"))
    config = Config(retriever="bm25", embedding_backend=asked, cache_dir=str(tmp_path / "cache"))
    run = start_run(fixture_golden, fixture_corpus, config)
    for _ in run.questions():
        pass
    run.finish()
    recorded = json.loads((run.directory / "summary.json").read_text())["config"]["embedding_backend"]
    assert recorded == pick_backend(asked) != "auto"
    assert f"embedding backend {recorded}" in describe_index(run.index, recorded)


# Queries through the cache; the model loads only for a text that is not cached


def test_a_question_asked_before_is_not_encoded_again(tmp_path: Path) -> None:
    encoder = Counting()
    retriever = DenseRetriever(encoder, EmbeddingCache(tmp_path))
    retriever.index(chunks())
    assert encoder.texts == len(DOCS)  # the chunks, and no warm-up
    first = retriever.search(QUESTION, k=2)
    assert encoder.texts == len(DOCS) + 1 and first[0].chunk.doc_id == "w/backups.md"
    again = DenseRetriever(encoder, EmbeddingCache(tmp_path))  # another process, the same cache folder
    again.index(chunks())
    assert [(h.chunk.chunk_id, h.score) for h in again.search(QUESTION, k=2)] == [(h.chunk.chunk_id, h.score) for h in first]
    assert encoder.texts == len(DOCS) + 1  # nothing encoded: chunks and question came from the cache


def test_a_fully_cached_dense_run_never_imports_torch(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)  # vectors stored under the real model's name and the fp32 backend
    cache.vectors_for([c.text for c in chunks()] + [QUESTION], Counting(SUPPORTED_MODEL, "fp32", dim=384))
    script = f"""
import sys
from exercise.config import Config
from tests.test_encoders import DOCS, QUESTION
from exercise.pipeline import build_pipeline
pipeline = build_pipeline(Config(embedding_backend="fp32", cache_dir={str(tmp_path)!r}), DOCS)
answer = pipeline.answer(QUESTION)
assert answer.retrieved[0].chunk.doc_id == "w/backups.md", answer
loaded = sorted(name for name in ("torch", "sentence_transformers", "transformers") if name in sys.modules)
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# Parity with fp32 (slow: loads the real model once per backend)


@pytest.mark.slow
def test_every_backend_auto_can_pick_on_a_cpu_keeps_cosine_to_fp32() -> None:
    import torch

    from harness.corpus import load_corpus

    assert embedding.cpu_has_bf16() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    texts = [c.text for d in load_corpus(ROOT / "corpus") for c in FixedSizeChunker(800).chunk(d)]
    sample = texts[:: max(1, len(texts) // 48)]  # ~48 chunks spread over the corpus
    reference = Embedder(backend="fp32").encode(sample)
    for backend in [name for name, (device, _) in BACKENDS.items() if device == "cpu" and name != "fp32"]:
        vectors = Embedder(backend=backend).encode(sample)
        assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert float(np.min(np.sum(vectors * reference, axis=1))) >= 0.99, backend


def test_a_bm25_run_names_no_embedding_backend():
    from harness.report import embedding_backend

    assert embedding_backend({"retriever": "bm25", "embedding_backend": "bf16"}) is None
    assert embedding_backend({"retriever": "dense", "embedding_backend": "bf16"}) == "bf16"
    assert embedding_backend({"retriever": "hybrid", "embedding_backend": "fp32"}) == "fp32"
