"""Micro-batching of query encodes for the HTTP service: concurrent /api/search and /api/ask requests whose
queries need the model are encoded together, in one encode() call, instead of one forward pass each.

BatchingEncoder wraps any encoder (an object with encode(texts) -> one row per text, and a `name`). A caller's
texts join a queue; one worker thread takes what is queued, encodes it in one call and hands each caller its
own rows. While it encodes, new callers queue for the next batch, so under load batches fill by themselves.
When the last batch held more than one text (there is concurrency), the worker also waits up to `max_wait_s`
for company, or until `max_batch` texts are queued; a lone caller never waits. An encoder error reaches every
caller of that batch. install_query_batching() finds the encoders inside a built pipeline and swaps in the
wrapper; the pipeline's code does not change and need not know.

Left out on purpose: caching vectors (exercise/embedding*.py may do that: a cache that calls its encoder only
on a miss keeps working, and only its misses are batched), batching the index build (a big encode() call goes
straight through), and batching anything but encode().
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

MAX_BATCH = 32  # texts per encode() call; the starter's Embedder batches 32 at a time too
MAX_WAIT_S = 0.002  # how long a batch may wait for company, once the last batch showed there is any
IDLE_EXIT_S = 30.0  # the worker thread ends after this long without work; the next caller starts another


@dataclass
class _Request:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None
    wait: bool = True  # False: the batch holding it is not held back for company


def encode_threads() -> int:
    """Threads for PyTorch's operators while serving: half the cores (one on a 2-core machine)."""
    return max(1, (os.cpu_count() or 2) // 2)


def limit_torch_threads() -> bool:
    """Run PyTorch's operators on encode_threads() threads, if PyTorch is loaded; True once done.

    A served query batch is a few short texts: on a 2-core machine that is busy elsewhere, splitting its small
    matrix products over two threads makes one thread spin at every barrier while the other waits for a core
    (measured on a shared 2-core VM: 98-200 ms and as much CPU per single encode with 2 threads, 13 ms with 1;
    4.7 CPU ms per text in batches of 16). Concurrency comes from the requests instead: half the cores
    encode while the others serve HTTP. Never imports torch itself (a pipeline may not use it).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    torch.set_num_threads(encode_threads())  # called from the thread that encodes: its OpenMP setting follows
    return True


class BatchingEncoder:
    """An encoder that encodes concurrent callers' texts together; everything but encode() is the inner one's."""

    def __init__(self, inner: Any, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S,
                 limit_threads: bool = False):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s at least 0")
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.requests = 0  # encode() calls that went through the queue
        self.batches = 0  # encode() calls made on the inner encoder for them
        self.texts = 0
        self.largest = 0
        self._last_batch = 0
        self._threads_set = not limit_threads  # limit_threads: limit_torch_threads() before and after encoding

    def __getattr__(self, name: str) -> Any:  # name, backend, batch_size, ...: the inner encoder's
        if name in ("inner", "_queue", "_cond", "_worker"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def stats(self) -> dict[str, float]:
        return {"requests": self.requests, "batches": self.batches, "texts": self.texts, "largest_batch": self.largest,
                "mean_batch": round(self.texts / self.batches, 2) if self.batches else 0.0}

    def encode(self, texts: Sequence[str], wait: bool = True) -> np.ndarray:
        """The inner encoder's rows for texts, encoded with other callers'; wait=False: the batch holding them
        is not held back max_wait_s for company (a batched cache lookup already brings its company along)."""
        texts = list(texts)
        if not texts or len(texts) >= self.max_batch:
            return self.inner.encode(texts)  # nothing to gain from company
        request = _Request(texts, wait=wait)
        with self._cond:
            self._queue.append(request)
            self.requests += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="encode-batcher", daemon=True)
                self._worker.start()
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.vectors  # type: ignore[return-value]

    def _take(self) -> list[_Request] | None:
        """The next batch: what is queued (after up to max_wait_s more, when the last batch was shared), at most
        max_batch texts; None when the worker should end (idle too long)."""
        with self._cond:
            idle_since = time.monotonic()
            while not self._queue:
                if not self._cond.wait(timeout=1.0) and time.monotonic() - idle_since > IDLE_EXIT_S and not self._queue:
                    self._worker = None
                    return None
            hold = self._last_batch > 1 and all(r.wait for r in self._queue)
            deadline = time.monotonic() + (self.max_wait_s if hold else 0.0)
            while sum(len(r.texts) for r in self._queue) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(timeout=left):
                    break
            batch, count = [], 0
            while self._queue and (not batch or count + len(self._queue[0].texts) <= self.max_batch):
                request = self._queue.popleft()
                batch.append(request)
                count += len(request.texts)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._encode(batch)

    def _encode(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        self._last_batch = len(texts)
        try:
            if not self._threads_set:
                self._threads_set = limit_torch_threads()
            vectors = np.asarray(self.inner.encode(texts))
            if not self._threads_set:  # the model (and torch) loaded lazily in this call
                self._threads_set = limit_torch_threads()
            if len(vectors) != len(texts):
                raise ValueError(f"the encoder returned {len(vectors)} rows for {len(texts)} texts")
        except BaseException as exc:  # noqa: BLE001 - every caller of this batch gets it
            for request in batch:
                request.error = exc
                request.done.set()
            return
        self.batches += 1
        self.texts += len(texts)
        self.largest = max(self.largest, len(texts))
        start = 0
        for request in batch:
            request.vectors = vectors[start:start + len(request.texts)].copy()
            start += len(request.texts)
            request.done.set()


def is_encoder(value: Any) -> bool:
    """An object that encodes text as contracts' TextEncoder does: encode() and a name."""
    return (not isinstance(value, (str, bytes, type)) and callable(getattr(value, "encode", None))
            and isinstance(getattr(value, "name", None), str))


def _walkable(value: Any, roots: set[str]) -> bool:
    """Only the pipeline's own objects are searched: not third-party ones (a model, a faiss index) or data."""
    module = getattr(type(value), "__module__", "") or ""
    return hasattr(value, "__dict__") and module.split(".")[0] in roots


def install_query_batching(pipeline: Any, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S,
                           depth: int = 4, limit_threads: bool = True) -> list[BatchingEncoder]:
    """Replace each encoder held by the pipeline's objects (e.g. pipeline.retriever.encoder) with a BatchingEncoder
    around it; the wrappers made (one per distinct encoder). An encoder that holds another encoder (a vector
    cache around a model) is searched further and the innermost one wrapped, so cache hits are never queued.
    With limit_threads, PyTorch runs on half the cores from the first batch on (limit_torch_threads()):
    the service's concurrency comes from its requests."""
    roots = {type(pipeline).__module__.split(".")[0], "exercise"}
    wrapped: dict[int, BatchingEncoder] = {}
    holds: dict[int, bool] = {}  # id -> the object holds an encoder (False while being searched)

    def wrap(encoder: Any) -> BatchingEncoder:
        if id(encoder) not in wrapped:
            wrapped[id(encoder)] = BatchingEncoder(encoder, max_batch, max_wait_s, limit_threads)
        return wrapped[id(encoder)]

    def visit(obj: Any, level: int) -> bool:
        """Wrap the encoders below obj; True when obj holds one (directly or deeper)."""
        if id(obj) in holds or level > depth:
            return holds.get(id(obj), False)
        holds[id(obj)] = False
        for name, value in list(vars(obj).items()):
            if isinstance(value, list) and len(value) > 64:
                continue  # data (chunks, vectors), not parts of the pipeline
            items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
            for index, item in items:
                if isinstance(item, BatchingEncoder):
                    holds[id(obj)] = True
                elif not _walkable(item, roots):
                    continue  # data, or a third-party object such as the model itself: never wrapped
                elif visit(item, level + 1):
                    holds[id(obj)] = True  # it holds an encoder (wrapped now): a cache around a model stays outside
                elif is_encoder(item):
                    try:
                        if index is None:
                            setattr(obj, name, wrap(item))
                        else:
                            value[index] = wrap(item)
                    except (AttributeError, TypeError):  # frozen or slotted: left unbatched
                        continue
                    holds[id(obj)] = True
        return holds[id(obj)]

    if hasattr(pipeline, "__dict__"):
        visit(pipeline, 0)
    return list(wrapped.values())


# --- the query vectors' cache lookup ---------------------------------------------------------------------------

@dataclass
class _Lookup:
    texts: list[str]
    encoder: Any
    done: bool = False
    result: tuple[np.ndarray, int] | None = None
    error: BaseException | None = None


class _NoWait:
    """The encoder a batched lookup hands the cache: a BatchingEncoder that encodes without waiting for company
    (a lookup batch already holds all the company there is); name, backend and the rest are the encoder's."""

    def __init__(self, encoder: BatchingEncoder):
        self._encoder = encoder

    def __getattr__(self, name: str) -> Any:
        if name == "_encoder":
            raise AttributeError(name)
        return getattr(self._encoder, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encoder.encode(texts, wait=False)


class BatchingCache:
    """A vector cache (exercise/embedding_cache.py's EmbeddingCache) whose small vectors_for() calls made at the
    same time are answered by one call for all their texts: one read, one encode of the misses and one write
    transaction per batch instead of one each. Everything but vectors_for() is the inner cache's.

    No worker thread: the first caller runs the lookup in its own thread (a lone caller waits for nobody); callers
    arriving meanwhile queue, and when it ends one of them runs everything queued (same encoder, at most
    max_batch texts) as the next batch. An error in a batch's lookup reaches every caller in it. Each caller's
    `encoded` is the batch's count (the retriever ignores it). A call with progress, or with max_batch texts or
    more, goes straight through, as does one whose batched answer has the wrong number of rows (each caller of
    such a batch then calls the inner cache alone)."""

    def __init__(self, inner: Any, max_batch: int = MAX_BATCH):
        self.inner = inner
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: deque[_Lookup] = deque()
        self._busy = False
        self.requests = 0  # vectors_for() calls that were batched
        self.batches = 0  # vectors_for() calls made on the inner cache for them
        self.largest = 0

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "_cond", "_queue"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def stats(self) -> dict[str, float]:
        return {"lookups": self.requests, "lookup_batches": self.batches, "largest_lookup_batch": self.largest,
                "mean_lookup_batch": round(self.requests / self.batches, 2) if self.batches else 0.0}

    def vectors_for(self, texts: Sequence[str], encoder: Any, progress: Any = None) -> tuple[np.ndarray, int]:
        texts = list(texts)
        if progress is not None or not texts or len(texts) >= self.max_batch:
            return self.inner.vectors_for(texts, encoder, progress)
        lookup = _Lookup(texts, encoder)
        with self._cond:
            self._queue.append(lookup)
            self.requests += 1
            while not lookup.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._take()
                self._cond.release()
                try:
                    self._lookup(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    for each in batch:
                        each.done = True
                    self._cond.notify_all()
        if lookup.error is not None:
            raise lookup.error
        return lookup.result  # type: ignore[return-value]

    def _take(self) -> list[_Lookup]:
        """The queued lookups with the first one's encoder, in order, up to max_batch texts (at least one)."""
        first = self._queue[0]
        batch, rest, count = [], deque(), 0
        while self._queue:
            lookup = self._queue.popleft()
            if lookup.encoder is first.encoder and (not batch or count + len(lookup.texts) <= self.max_batch):
                batch.append(lookup)
                count += len(lookup.texts)
            else:
                rest.append(lookup)
        self._queue.extend(rest)
        return batch

    def _lookup(self, batch: list[_Lookup]) -> None:
        encoder = batch[0].encoder
        inner_encoder = _NoWait(encoder) if isinstance(encoder, BatchingEncoder) else encoder
        texts = [text for lookup in batch for text in lookup.texts]
        try:
            result = self.inner.vectors_for(texts, inner_encoder)
            vectors, encoded = result
            vectors = np.asarray(vectors)
            if vectors.ndim != 2 or len(vectors) != len(texts):
                raise _Unexpected
        except _Unexpected:
            for lookup in batch:  # not the starter's answer: each caller's own call, as without batching
                try:
                    lookup.result = self.inner.vectors_for(lookup.texts, encoder)
                except BaseException as exc:  # noqa: BLE001 - that caller gets it
                    lookup.error = exc
            return
        except BaseException as exc:  # noqa: BLE001 - every caller of this batch gets it
            for lookup in batch:
                lookup.error = exc
            return
        self.batches += 1
        self.largest = max(self.largest, len(texts))
        start = 0
        for lookup in batch:
            lookup.result = (vectors[start:start + len(lookup.texts)].copy(), encoded)
            start += len(lookup.texts)


class _Unexpected(Exception):
    """The inner cache's answer is not one row per text."""


def _starter_cache(cache: Any) -> bool:
    """The starter's EmbeddingCache (or a subclass) with its vectors_for(texts, encoder, progress) signature."""
    try:
        from exercise.embedding_cache import EmbeddingCache
    except ImportError:
        return False
    if not isinstance(cache, EmbeddingCache):
        return False
    try:
        params = list(inspect.signature(cache.vectors_for).parameters)
    except (TypeError, ValueError):
        return False
    return params[:3] == ["texts", "encoder", "progress"]


def install_lookup_batching(pipeline: Any, max_batch: int = MAX_BATCH, depth: int = 4) -> list[BatchingCache]:
    """Wrap the vector cache of each dense retriever in the pipeline (an object of the pipeline's own code holding
    `cache`, the starter's EmbeddingCache, and an `encoder`) in a BatchingCache; the wrappers made. Anything
    else (no such retriever, a cache of another kind or signature, a frozen object) is left as it is, and its
    queries take the unbatched path. Run after install_query_batching(), so lookups' misses reach the encode
    batcher without waiting for company."""
    roots = {type(pipeline).__module__.split(".")[0], "exercise"}
    wrapped: dict[int, BatchingCache] = {}
    seen: set[int] = set()

    def visit(obj: Any, level: int) -> None:
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        attrs = vars(obj)
        cache = attrs.get("cache")
        if cache is not None and not isinstance(cache, BatchingCache) and is_encoder(attrs.get("encoder")) \
                and _starter_cache(cache):
            if id(cache) not in wrapped:
                wrapped[id(cache)] = BatchingCache(cache, max_batch)
            try:
                setattr(obj, "cache", wrapped[id(cache)])
            except (AttributeError, TypeError):
                pass
        for name, value in list(attrs.items()):
            if isinstance(value, list) and len(value) > 64:
                continue
            for item in value if isinstance(value, list) else [value]:
                if _walkable(item, roots) and not isinstance(item, (BatchingCache, BatchingEncoder)):
                    visit(item, level + 1)

    if hasattr(pipeline, "__dict__"):
        visit(pipeline, 0)
    return list(wrapped.values())
