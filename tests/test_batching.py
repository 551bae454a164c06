"""harness/batching.py: concurrent query encodes in one call, each caller its own rows, an encoder error to every
waiter; finding the encoders inside a pipeline; and the service wrapping them (or not, with batch_queries=False).

Concurrency is made deterministic with a gate: the encoder's first call waits until every caller has queued,
so the rest are certain to share the next batch. No timing is asserted.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Sequence

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import FakePipeline
from harness.batching import BatchingEncoder, install_query_batching
from harness.service import create_app

CALLERS = 16


def vector_of(text: str) -> np.ndarray:
    """A row that names its text: its length, the sum of its code points, and its first code point."""
    return np.array([len(text), sum(map(ord, text)), ord(text[0]) if text else 0], dtype=np.float32)


class FakeEncoder:
    name = "fake-encoder"
    backend = "fp32"

    def __init__(self, fail: bool = False):
        self.calls: list[list[str]] = []
        self.fail = fail
        self.gate: threading.Event | None = None  # when set, the first call waits for it
        self.lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
            first = len(self.calls) == 1
        if first and self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise RuntimeError(f"encoder broke on {len(texts)} texts")
        return np.stack([vector_of(t) for t in texts])


def run_callers(batcher: BatchingEncoder, encoder: FakeEncoder, texts: list[list[str]]) -> list[object]:
    """Call batcher.encode(texts[i]) from one thread each, all at once; each thread's result or exception."""
    encoder.gate = threading.Event()
    results: list[object] = [None] * len(texts)

    def call(i: int) -> None:
        try:
            results[i] = batcher.encode(texts[i])
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while batcher.requests < len(texts) and time.monotonic() < deadline:  # every caller has queued
        time.sleep(0.001)
    encoder.gate.set()
    for thread in threads:
        thread.join(30)
    return results


def test_each_concurrent_caller_gets_its_own_vectors_and_the_encoder_sees_fewer_calls():
    encoder = FakeEncoder()
    batcher = BatchingEncoder(encoder)
    texts = [[f"question number {i}" + "?" * i] for i in range(CALLERS - 2)] + [["two texts", "in one call"], ["x"]]
    results = run_callers(batcher, encoder, texts)
    for asked, got in zip(texts, results):
        assert isinstance(got, np.ndarray), got
        np.testing.assert_array_equal(got, np.stack([vector_of(t) for t in asked]))
    assert len(encoder.calls) < CALLERS
    assert len(encoder.calls) == 2  # the first caller alone, then everyone who queued behind it
    assert sorted(t for call in encoder.calls for t in call) == sorted(t for ask in texts for t in ask)
    assert batcher.stats()["requests"] == CALLERS and batcher.stats()["batches"] == 2


def test_an_encoder_error_reaches_every_waiter_and_the_next_call_still_works():
    encoder = FakeEncoder(fail=True)
    batcher = BatchingEncoder(encoder)
    results = run_callers(batcher, encoder, [[f"q{i}"] for i in range(CALLERS)])
    assert all(isinstance(r, RuntimeError) and "encoder broke" in str(r) for r in results), results
    assert len(encoder.calls) < CALLERS
    encoder.fail, encoder.gate = False, None
    np.testing.assert_array_equal(batcher.encode(["again"]), vector_of("again")[None, :])


def test_a_wrong_row_count_is_an_error_for_each_caller_not_a_wrong_vector():
    class Short(FakeEncoder):
        def encode(self, texts):
            return super().encode(texts)[:-1]

    encoder = Short()
    batcher = BatchingEncoder(encoder)
    results = run_callers(batcher, encoder, [[f"q{i}"] for i in range(4)])
    assert all(isinstance(r, ValueError) and "rows for" in str(r) for r in results)


def test_big_and_empty_calls_go_straight_through_and_attributes_are_the_inner_encoders():
    encoder = FakeEncoder()
    batcher = BatchingEncoder(encoder, max_batch=4)
    assert batcher.encode([f"t{i}" for i in range(4)]).shape == (4, 3)
    assert batcher.requests == 0 and len(encoder.calls) == 1  # no queue for an index build's batches
    assert (batcher.name, batcher.backend) == ("fake-encoder", "fp32")  # the cache key is unchanged


# --- finding the encoders of a pipeline -----------------------------------------------------------

class VectorCache:
    """A cache around an encoder, as exercise/embedding_cache.py may hold one: only misses reach the encoder."""

    name = "cached"

    def __init__(self, encoder):
        self.encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts):
        missing = [t for t in texts if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.encoder.encode(missing)))
        return np.stack([self.vectors[t] for t in texts])


class DenseLike:
    def __init__(self, encoder):
        self.encoder = encoder
        self.matrix = np.zeros((3, 3))  # data is left alone


class Hybrid:
    def __init__(self, parts):
        self.parts = parts


class PipelineWithEncoders(FakePipeline):
    def __init__(self, config, documents, retriever):
        super().__init__(config, documents)
        self.retriever = retriever

    def search(self, query, k):
        self.retriever.encoder.encode([query]) if hasattr(self.retriever, "encoder") else None
        return super().search(query, k)


def test_install_wraps_each_distinct_encoder_once_and_the_innermost_of_a_cache():
    shared = FakeEncoder()
    retriever = Hybrid([DenseLike(shared), DenseLike(shared), DenseLike(VectorCache(FakeEncoder()))])
    pipeline = PipelineWithEncoders(None, [], retriever)
    made = install_query_batching(pipeline)
    first, second, cached = retriever.parts
    assert len(made) == 2
    assert isinstance(first.encoder, BatchingEncoder) and first.encoder is second.encoder
    assert first.encoder.inner is shared
    assert isinstance(cached.encoder, VectorCache) and isinstance(cached.encoder.encoder, BatchingEncoder)
    assert isinstance(first.matrix, np.ndarray)
    assert install_query_batching(pipeline) == []  # already wrapped: nothing wrapped twice


def test_a_pipeline_without_encoders_is_left_as_it_is(fixture_corpus):
    from harness.corpus import load_corpus

    pipeline = FakePipeline(None, load_corpus(fixture_corpus))
    before = dict(vars(pipeline))
    assert install_query_batching(pipeline) == []
    assert vars(pipeline) == before


@pytest.fixture
def encoder_pipeline_module(monkeypatch) -> str:
    """`encoder_pipeline`: the fake pipeline with a retriever holding a FakeEncoder, which search() calls."""
    module = types.ModuleType("encoder_pipeline")
    module.build_pipeline = lambda config, documents: PipelineWithEncoders(config, documents, DenseLike(FakeEncoder()))
    monkeypatch.setitem(sys.modules, "encoder_pipeline", module)
    return "encoder_pipeline"


def test_the_service_batches_the_pipelines_encoder_and_answers_the_same(encoder_pipeline_module, fixture_corpus,
                                                                       fixture_golden, runs):
    batched = TestClient(create_app(encoder_pipeline_module, fixture_corpus, fixture_golden))
    plain = TestClient(create_app(encoder_pipeline_module, fixture_corpus, fixture_golden, batch_queries=False))
    assert isinstance(batched.app.state.pipeline.retriever.encoder, BatchingEncoder)
    assert isinstance(plain.app.state.pipeline.retriever.encoder, FakeEncoder)
    for question in ("KOS-4032 bucket name", "How many rules per bucket?"):
        a = batched.post("/api/search", json={"question": question, "k": 3}).json()
        b = plain.post("/api/search", json={"question": question, "k": 3}).json()
        assert [h["chunk_id"] for h in a["hits"]] == [h["chunk_id"] for h in b["hits"]]
    (stats,) = batched.get("/healthz").json()["query_batching"]
    assert stats["requests"] == 2 and stats["batches"] == 2
    assert plain.get("/healthz").json()["query_batching"] is None


def test_with_limit_threads_pytorch_runs_on_half_the_cores_from_the_first_batch(monkeypatch):
    from harness import batching

    calls = []
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=calls.append))
    monkeypatch.setattr(batching.os, "cpu_count", lambda: 2)
    batcher = BatchingEncoder(FakeEncoder(), limit_threads=True)
    batcher.encode(["one"])
    batcher.encode(["two"])
    assert calls == [1]  # once, before the first batch; a 2-core machine encodes on one thread
    monkeypatch.delitem(sys.modules, "torch")
    untouched = BatchingEncoder(FakeEncoder(), limit_threads=True)
    untouched.encode(["no torch here"])  # a pipeline without torch: nothing imported, nothing set
    assert "torch" not in sys.modules and calls == [1]
