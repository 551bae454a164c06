"""Retrievers: BM25 over whitespace tokens, and dense cosine search with faiss; both keep contracts.Retriever.

make_retriever() picks one by name from the config. Left out on purpose: fusing the two (task 2),
reranking (task 3), fast sparse scoring (task 7), and any tokenizer smarter than lower() + split(),
so "kq-4408?" and "kq-4408" are different tokens here.
"""

from __future__ import annotations

from typing import Sequence

import faiss
import numpy as np
from rank_bm25 import BM25Okapi

from .config import Config
from .contracts import Chunk, Hit, Retriever
from .embedding import EmbeddingCache, Embedder, TextEncoder

RETRIEVERS = ("bm25", "dense")


def tokenize(text: str) -> list[str]:
    """Lower-case and split on whitespace: "Error KQ-4408?" -> ["error", "kq-4408?"]."""
    return text.lower().split()


def _check_index(chunks: Sequence[Chunk]) -> list[Chunk]:
    if not chunks:
        raise ValueError("no chunks to index; is the corpus empty, or did the chunker return nothing?")
    return list(chunks)


class BM25Retriever:
    """Okapi BM25 (rank-bm25) over every chunk's text."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self._bm25: BM25Okapi | None = None

    def index(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = _check_index(chunks)
        self._bm25 = BM25Okapi([tokenize(chunk.text) for chunk in self.chunks])

    def search(self, query: str, k: int) -> list[Hit]:
        if self._bm25 is None:
            raise ValueError("BM25Retriever.search() called before index(chunks)")
        # TODO(task 7): make a query cost well under a millisecond. get_scores() loops over every chunk
        #   in Python: about 33 ms per query at 20k chunks. Precomputed BM25 weights in a sparse matrix
        #   (bm25s, or scipy.sparse) answer the same query in 0.2-0.6 ms, e.g. 33 ms -> 0.4 ms at p50.
        scores = self._bm25.get_scores(tokenize(query))
        best = np.argsort(-scores, kind="stable")[:k]  # ties keep corpus order
        return [Hit(self.chunks[i], float(scores[i])) for i in best]


class DenseRetriever:
    """Exact inner-product search (faiss IndexFlatIP) over normalized embeddings, i.e. cosine similarity."""

    def __init__(self, encoder: TextEncoder, cache: EmbeddingCache):
        self.encoder = encoder
        self.cache = cache
        self.chunks: list[Chunk] = []
        self._index: faiss.IndexFlatIP | None = None

    def index(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = _check_index(chunks)
        vectors = self.cache.load_or_build(self.chunks, self.encoder)
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)
        # No warm-up encode: when every chunk and question is cached, the model never loads (saves ~10 s).

    def warm_up(self, questions: Sequence[str]) -> None:
        """Encode the questions not cached yet, in one batch; the model loads only if there is one."""
        self.cache.vectors_for(list(questions), self.encoder)

    def search(self, query: str, k: int) -> list[Hit]:
        if self._index is None:
            raise ValueError("DenseRetriever.search() called before index(chunks)")
        # TODO(task 7): a question asked before takes its vector from the embedding cache (a SQLite read,
        #   ~1 ms; `ragkata eval` puts a run's new questions there in one batch, through warm_up); one asked
        #   alone (ask, serve) is encoded alone (~10 ms), and the first new one of a process also loads
        #   the model (~10 s). Keep vectors in memory, or encode concurrent questions together, e.g.
        #   "retrieve" p50 1 ms -> under 0.1 ms.
        vector, _ = self.cache.vectors_for([query], self.encoder)  # encodes only a question not cached
        scores, ids = self._index.search(vector, min(k, len(self.chunks)))
        return [Hit(self.chunks[i], float(score)) for score, i in zip(scores[0], ids[0]) if i >= 0]


def make_retriever(config: Config, cache: EmbeddingCache | None = None) -> Retriever:
    """The retriever named by config.retriever, not yet indexed."""
    # TODO(task 2): add "hybrid": run BM25 and dense, then fuse the two rankings, e.g. reciprocal rank
    #   fusion, score(chunk) = bm25_weight / (60 + bm25_rank) + dense_weight / (60 + dense_rank).
    #   "what does error XY-1234 mean" (dense blurs the id) and "how do I pay less for files nobody reads"
    #   (BM25 misses the paraphrase) should both find their chunk in the top 5. Add the name to RETRIEVERS,
    #   and remove bm25_weight and dense_weight from NOT_READ_YET in pipeline.py once your code reads them.
    if config.retriever == "bm25":
        return BM25Retriever()
    if config.retriever == "dense":
        encoder = Embedder(config.model, backend=config.embedding_backend)
        return DenseRetriever(encoder, cache or EmbeddingCache(config.cache_dir))
    raise ValueError(f"unknown retriever {config.retriever!r}; choose one of: {', '.join(RETRIEVERS)} "
                     "(example: --config retriever=dense)")
