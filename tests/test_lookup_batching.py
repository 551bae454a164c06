"""harness/batching.py's BatchingCache and exercise/embedding_cache.py's persistent connection: concurrent searches
through the batched cache path find what one-at-a-time searches find, a failing lookup reaches every waiter, a
cache that is not the starter's is left alone, and one cache serves many threads.

Concurrency is made deterministic with a gate: the first lookup blocks until every caller has queued, so the
rest are certain to share the next batch. No timing is asserted.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from exercise.contracts import Chunk
from exercise.embedding_cache import EmbeddingCache
from exercise.retrieval import DenseRetriever
from harness.batching import BatchingEncoder, install_lookup_batching, install_query_batching

CALLERS = 12
DOCS = [f"document {n} about {topic}" for n, topic in enumerate(
    ["lifecycle rules", "cold-vault", "refunds", "bucket names", "error codes", "quotas", "billing", "regions"])]


def vector_of(text: str) -> np.ndarray:
    raw = np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], dtype=np.uint8).astype(np.float32) - 127.5
    return raw / np.linalg.norm(raw)


class FakeEncoder:
    name = "fake-encoder"
    backend = "fp32"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate: threading.Event | None = None  # when set, the first query call waits for it
        self.lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls.append(list(texts))
            first = len(self.calls) == 2  # the index build is call 1
        if first and self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        return np.stack([vector_of(t) for t in texts])


class Pipeline:
    def __init__(self, retriever: DenseRetriever):
        self.retriever = retriever


def dense(tmp_path: Path, encoder: FakeEncoder, cache: EmbeddingCache | None = None) -> DenseRetriever:
    retriever = DenseRetriever(encoder, cache or EmbeddingCache(tmp_path))
    retriever.index([Chunk(f"d{n}#0", f"d{n}", text, 0, len(text)) for n, text in enumerate(DOCS)])
    return retriever


def run_callers(count: int, call, until) -> list[object]:
    """call(i) from `count` threads at once, the gate opened once until() is true; each result or exception."""
    results: list[object] = [None] * count

    def run(i: int) -> None:
        try:
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not until() and time.monotonic() < deadline:
        time.sleep(0.001)
    for thread in threads:
        thread.join(30)
    return results


QUESTIONS = [f"question {i} about {DOCS[i % len(DOCS)][11:]}" for i in range(CALLERS)]


def test_concurrent_searches_through_the_batched_lookup_find_what_one_at_a_time_searches_find(tmp_path):
    alone = dense(tmp_path / "alone", FakeEncoder())
    expected = [[(h.chunk.chunk_id, round(h.score, 5)) for h in alone.search(q, 5)] for q in QUESTIONS]

    encoder = FakeEncoder()
    retriever = dense(tmp_path / "batched", encoder)
    pipeline = Pipeline(retriever)
    install_query_batching(pipeline, limit_threads=False)
    (lookups,) = install_lookup_batching(pipeline)
    assert retriever.cache is lookups and isinstance(retriever.encoder, BatchingEncoder)
    encoder.gate = threading.Event()

    def until() -> bool:
        done = lookups.requests >= CALLERS
        if done:
            encoder.gate.set()
        return done

    results = run_callers(CALLERS, lambda i: retriever.search(QUESTIONS[i], 5), until)
    got = [[(h.chunk.chunk_id, round(h.score, 5)) for h in hits] for hits in results]
    assert got == expected
    assert lookups.stats()["lookup_batches"] == 2  # the first caller alone, then everyone who queued behind it
    assert len(encoder.calls) == 1 + 2 and sorted(t for c in encoder.calls[1:] for t in c) == sorted(QUESTIONS)
    again = [[(h.chunk.chunk_id, round(h.score, 5)) for h in retriever.search(q, 5)] for q in QUESTIONS]
    assert again == expected and len(encoder.calls) == 3  # now cached: no encode


def test_a_failing_lookup_reaches_every_waiter_and_the_next_call_still_works(tmp_path):
    class Failing(EmbeddingCache):
        fail = False

        def vectors_for(self, texts, encoder, progress=None):
            if self.fail:
                encoder.encode(texts)  # through the gate, so the others queue meanwhile
                raise RuntimeError(f"cache broke on {len(texts)} texts")
            return super().vectors_for(texts, encoder, progress)

    encoder = FakeEncoder()
    cache = Failing(tmp_path)
    retriever = dense(tmp_path, encoder, cache)
    (lookups,) = install_lookup_batching(Pipeline(retriever))
    cache.fail, encoder.gate = True, threading.Event()

    def until() -> bool:
        if lookups.requests >= CALLERS:
            encoder.gate.set()
            return True
        return False

    results = run_callers(CALLERS, lambda i: retriever.search(QUESTIONS[i], 3), until)
    assert all(isinstance(r, RuntimeError) and "cache broke" in str(r) for r in results), results
    assert len(encoder.calls) - 1 < CALLERS  # they were batched
    cache.fail = False
    assert retriever.search("after the failure", 3)


def test_a_cache_that_is_not_the_starters_is_left_alone(tmp_path):
    class OwnCache:
        def vectors_for(self, texts, encoder):
            return np.stack([vector_of(t) for t in texts]), len(texts)

    retriever = DenseRetriever(FakeEncoder(), OwnCache())  # type: ignore[arg-type]
    assert install_lookup_batching(Pipeline(retriever)) == []
    assert isinstance(retriever.cache, OwnCache)
    starter = dense(tmp_path, FakeEncoder())
    assert len(install_lookup_batching(Pipeline(starter))) == 1
    assert install_lookup_batching(Pipeline(starter)) == []  # already wrapped: never twice


def test_one_cache_connection_serves_many_threads_at_once(tmp_path):
    cache = EmbeddingCache(tmp_path)
    encoder = FakeEncoder()
    cache.vectors_for(DOCS, encoder)
    connection = cache._db
    assert connection is not None

    def call(i: int) -> np.ndarray:
        texts = [DOCS[i % len(DOCS)], f"new text {i}", DOCS[(i + 3) % len(DOCS)]]
        for _ in range(5):
            vectors, _ = cache.vectors_for(texts, encoder)
            np.testing.assert_array_equal(vectors, np.stack([vector_of(t) for t in texts]))
        return vectors

    results = run_callers(16, call, lambda: True)
    assert all(isinstance(r, np.ndarray) for r in results), results
    assert cache._db is connection  # opened once, used by every thread
    cache.close()
    fresh = EmbeddingCache(tmp_path)
    _, encoded = fresh.vectors_for([f"new text {i}" for i in range(16)] + DOCS, FakeEncoder())
    assert encoded == 0  # everything the threads wrote was committed
