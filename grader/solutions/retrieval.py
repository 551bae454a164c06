"""Retrievers: sparse BM25 with an identifier-aware tokenizer, dense cosine search, and their rank fusion.

BM25 weights are computed once into a scipy sparse matrix, so a query costs a column slice and a sum
(well under a millisecond), and the query vector is encoded once per question and cached.
make_retriever() picks "bm25", "dense" or "hybrid" (reciprocal rank fusion of the two).
Left out on purpose: stemming, query expansion, approximate vector indexes (a flat index is exact
and fast enough at a few thousand chunks), and reranking (pipeline.py reranks the fused list).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Sequence

import faiss
import numpy as np
from scipy import sparse

from exercise.config import Config
from exercise.contracts import Chunk, Hit, Retriever
from exercise.embedding import EmbeddingCache, Embedder, TextEncoder

RETRIEVERS = ("bm25", "dense", "hybrid")

# task 2: an identifier is letters and digits joined by - . _ / : with no space, e.g. kos-4031,
#   queues.delivery.visibility_timeout_s, 4.6.2, inc-2026-0815. Trailing punctuation is not part of it.
_TOKEN = re.compile(r"[a-z0-9]+(?:[-._/:][a-z0-9]+)*")
_PART = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it its "
    "me my of on or our so than that the their them then there these they this to was we were what when where "
    "which while who why will with would you your".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased words and whole identifiers, plus the parts of each identifier; no stop words.

    "Error KOS-4031?" -> ["error", "kos-4031", "kos", "4031"]; "v4.6.2." -> ["v4.6.2", "v4", "6", "2"].
    """
    tokens: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if token in STOPWORDS:
            continue
        tokens.append(token)
        parts = _PART.findall(token)
        if len(parts) > 1:
            tokens.extend(p for p in parts if p not in STOPWORDS)
    return tokens


def _check_index(chunks: Sequence[Chunk]) -> list[Chunk]:
    if not chunks:
        raise ValueError("no chunks to index; is the corpus empty, or did the chunker return nothing?")
    return list(chunks)


class SparseBM25:
    """Okapi BM25 with every (term, chunk) weight precomputed: score(q, d) = sum over q's terms of W[d, t].

    W[d, t] = idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avglen)),
    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)), the always-positive variant (Lucene's).
    """

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75):
        self.vocabulary: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        lengths = np.array([len(doc) for doc in documents], dtype=np.float64)
        for row, doc in enumerate(documents):
            for term, tf in Counter(doc).items():
                rows.append(row)
                cols.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                tfs.append(tf)
        n = len(documents)
        tf = np.array(tfs, dtype=np.float64)
        df = np.bincount(cols, minlength=len(self.vocabulary)).astype(np.float64)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths[rows] / max(lengths.mean(), 1e-9))
        weights = self.idf[cols] * tf * (k1 + 1) / (tf + norm)
        self.weights = sparse.csc_matrix((weights, (rows, cols)), shape=(n, len(self.vocabulary)), dtype=np.float32)

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        """One score per document; terms outside the vocabulary add nothing."""
        ids = [self.vocabulary[t] for t in dict.fromkeys(query_terms) if t in self.vocabulary]
        if not ids:
            return np.zeros(self.weights.shape[0], dtype=np.float32)
        return np.asarray(self.weights[:, ids].sum(axis=1)).ravel()

    def idf_of(self, term: str) -> float:
        """The term's idf; a term never seen in the corpus counts as the rarest possible."""
        index = self.vocabulary.get(term)
        return float(self.idf[index]) if index is not None else float(self.idf.max(initial=math.log(2)))


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first; ties keep corpus order."""
    k = min(k, len(scores))
    candidates = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return candidates[np.lexsort((candidates, -scores[candidates]))]


class BM25Retriever:
    """BM25 over the identifier-aware tokens of every chunk (heading prefix included)."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.bm25: SparseBM25 | None = None
        self._row: dict[str, int] = {}

    def index(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = _check_index(chunks)
        self._row = {chunk.chunk_id: i for i, chunk in enumerate(self.chunks)}
        # task 7: precomputed sparse weights; a query is a column slice and a sum (about 0.2 ms).
        self.bm25 = SparseBM25([tokenize(chunk.text) for chunk in self.chunks])

    def search(self, query: str, k: int) -> list[Hit]:
        if self.bm25 is None:
            raise ValueError("BM25Retriever.search() called before index(chunks)")
        scores = self.bm25.scores(tokenize(query))
        return [Hit(self.chunks[i], float(scores[i])) for i in _top_k(scores, k)]

    def score_chunks(self, query: str, chunks: Sequence[Chunk]) -> np.ndarray:
        """The BM25 score of each given (indexed) chunk for the query."""
        if self.bm25 is None:
            raise ValueError("BM25Retriever.score_chunks() called before index(chunks)")
        scores = self.bm25.scores(tokenize(query))
        return np.array([scores[self._row[chunk.chunk_id]] for chunk in chunks], dtype=np.float64)

    def idf_of(self, term: str) -> float:
        """The term's idf in this index (see SparseBM25.idf_of)."""
        if self.bm25 is None:
            raise ValueError("BM25Retriever.idf_of() called before index(chunks)")
        return self.bm25.idf_of(term)


class DenseRetriever:
    """Exact cosine search (faiss IndexFlatIP over normalized vectors); each query is encoded once."""

    def __init__(self, encoder: TextEncoder, cache: EmbeddingCache):
        self.encoder = encoder
        self.cache = cache
        self.chunks: list[Chunk] = []
        self._index: faiss.IndexFlatIP | None = None
        # task 7: the pipeline, the fusion and the generator may all need the same question's vector.
        self.encode_query = lru_cache(maxsize=1024)(self._encode_query)

    def _encode_query(self, query: str) -> np.ndarray:
        return self.encoder.encode([query])[0]

    def index(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = _check_index(chunks)
        vectors = self.cache.load_or_build(self.chunks, self.encoder)
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)
        self.encoder.encode(["warm-up"])  # load the model now, not inside the first query's latency

    def search(self, query: str, k: int) -> list[Hit]:
        if self._index is None:
            raise ValueError("DenseRetriever.search() called before index(chunks)")
        scores, ids = self._index.search(self.encode_query(query)[None, :], min(k, len(self.chunks)))
        return [Hit(self.chunks[i], float(score)) for score, i in zip(scores[0], ids[0]) if i >= 0]


class HybridRetriever:
    """Reciprocal rank fusion: score(c) = w_bm25 / (rrf_k + rank_bm25(c)) + w_dense / (rrf_k + rank_dense(c)).

    Ranks start at 1; a chunk missing from one side's top `depth` gets nothing from that side.
    RRF needs no score normalization: BM25 is unbounded, cosine is at most 1, ranks are comparable.
    rrf_k = 10, not the usual 60: here a question has one or two relevant chunks, so the top ranks of
    each side should count for much more than rank 30 (measured on dev, fused list before the rerank:
    evidence_recall@5 0.85 at rrf_k 60, 0.88 at 10).
    """

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, bm25_weight: float = 0.5,
                 dense_weight: float = 0.5, depth: int = 50, rrf_k: int = 10):
        if bm25_weight < 0 or dense_weight < 0 or bm25_weight + dense_weight == 0:
            raise ValueError(f"hybrid weights must be non-negative and not both 0, got bm25_weight={bm25_weight}, "
                             f"dense_weight={dense_weight}; example: --config bm25_weight=0.5 --config dense_weight=0.5")
        self.bm25, self.dense = bm25, dense
        self.weights = (bm25_weight, dense_weight)
        self.depth, self.rrf_k = depth, rrf_k

    def index(self, chunks: Sequence[Chunk]) -> None:
        self.bm25.index(chunks)
        self.dense.index(chunks)

    def search(self, query: str, k: int) -> list[Hit]:
        # task 2: fuse deeper lists than we return, so a chunk ranked 25th on both sides can still surface.
        depth = max(self.depth, k)
        fused: dict[str, float] = {}
        by_id: dict[str, Chunk] = {}
        for weight, hits in zip(self.weights, (self.bm25.search(query, depth), self.dense.search(query, depth))):
            for rank, hit in enumerate(hits, start=1):
                fused[hit.chunk.chunk_id] = fused.get(hit.chunk.chunk_id, 0.0) + weight / (self.rrf_k + rank)
                by_id[hit.chunk.chunk_id] = hit.chunk
        best = sorted(fused, key=lambda cid: -fused[cid])[:k]  # stable: ties keep BM25's order
        return [Hit(by_id[cid], fused[cid]) for cid in best]


def make_retriever(config: Config, cache: EmbeddingCache | None = None) -> Retriever:
    """The retriever named by config.retriever, not yet indexed."""
    cache = cache or EmbeddingCache(config.cache_dir)
    if config.retriever == "bm25":
        return BM25Retriever()
    if config.retriever == "dense":
        return DenseRetriever(Embedder(config.model, backend=config.embedding_backend), cache)
    if config.retriever == "hybrid":
        dense = DenseRetriever(Embedder(config.model, backend=config.embedding_backend), cache)
        return HybridRetriever(BM25Retriever(), dense, config.bm25_weight, config.dense_weight)
    raise ValueError(f"unknown retriever {config.retriever!r}; choose one of: {', '.join(RETRIEVERS)} "
                     "(example: --config retriever=hybrid)")
