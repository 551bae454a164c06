"""The starter pipeline, wired end to end: chunk, index, retrieve, take the top hits as context, generate.

Start reading here. build_pipeline() is the one entry point the harness calls (`--pipeline exercise`);
each stage lives in its own module behind a Protocol from contracts.py.
Left out on purpose: reranking, a context budget and dropping superseded documents (task 3).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

from .chunking import FixedSizeChunker
from .config import Config
from .contracts import SCORED_DEPTH, Answer, Chunk, Chunker, Document, Generator, Hit, IndexStats, Retriever
from .embedding import EmbeddingCache, pick_backend
from .generation import ExtractiveGenerator
from .retrieval import make_retriever


# Config fields this pipeline does not read yet: name -> (task, where its TODO is). Setting one away from its
# default is an error, not a knob that silently does nothing. When your code reads a field, remove its entry.
NOT_READ_YET: dict[str, tuple[int, str]] = {
    "bm25_weight": (2, "exercise/retrieval.py, make_retriever"),
    "dense_weight": (2, "exercise/retrieval.py, make_retriever"),
    "context_budget_chars": (3, "exercise/pipeline.py, choose_context"),
    "abstain_threshold": (5, "exercise/generation.py"),
}


def check_knobs_are_read(config: Config) -> None:
    """Refuse a field of NOT_READ_YET set away from its default, e.g. abstain_threshold=0.3 before task 5."""
    defaults = Config()
    for name, (task, where) in NOT_READ_YET.items():
        value, default = getattr(config, name), getattr(defaults, name)
        if value != default:
            raise ValueError(f"config field {name}={value!r} would change nothing: the pipeline does not read "
                             f"{name} yet (TODO(task {task}) in {where}). Implement task {task}, then remove {name!r} "
                             f"from NOT_READ_YET in exercise/pipeline.py; until then leave {name} at its default, "
                             f"{default!r}")


def build_pipeline(config: Config, documents: Sequence[Document]) -> StarterPipeline:
    """Chunk and index the documents once; the returned pipeline answers many questions."""
    if config.k_retrieve < SCORED_DEPTH:
        raise ValueError(f"k_retrieve must be at least {SCORED_DEPTH}, got {config.k_retrieve}; "
                         f"the harness scores the top {SCORED_DEPTH} hits (example: --config k_retrieve=20)")
    check_knobs_are_read(config)
    # "auto" becomes the backend this machine uses (exercise/embedding.py), so the run records that one
    config = dataclasses.replace(config, embedding_backend=pick_backend(config.embedding_backend))
    generator: Generator = make_generator(config)  # before indexing, so a bad choice fails fast
    chunker: Chunker = FixedSizeChunker(config.chunk_size, config.chunk_overlap)
    chunks = [chunk for document in documents for chunk in chunker.chunk(document)]
    cache = EmbeddingCache(config.cache_dir)
    retriever: Retriever = make_retriever(config, cache)
    started = time.perf_counter()
    retriever.index(chunks)
    # cached stays False when nothing used the embedding cache
    index_stats = IndexStats(len(chunks), time.perf_counter() - started, cache.last_build["cached"])
    return StarterPipeline(config, documents, chunks, retriever, generator, index_stats)


def make_generator(config: Config) -> Generator:
    """The generator config.generator names: "extractive" (the default, offline) or "llm" (exercise/llm.py)."""
    if config.generator == "extractive":
        return ExtractiveGenerator(config.answer_sentences)
    if config.generator == "llm":
        from .llm import LLMGenerator  # imported only when chosen: it loads the openai client

        return LLMGenerator(config)
    raise ValueError(f"unknown generator {config.generator!r}; choose extractive or llm "
                     "(example: --config generator=llm)")


class StarterPipeline:
    """Answers one question at a time and records what each stage saw and how long it took."""

    def __init__(
        self,
        config: Config,
        documents: Sequence[Document],
        chunks: list[Chunk],
        retriever: Retriever,
        generator: Generator,
        index_stats: IndexStats,
    ):
        self.config = config
        self.documents = {document.doc_id: document for document in documents}  # status, updated, ...
        self.chunks = chunks
        self.retriever = retriever
        self.generator = generator
        self.index_stats = index_stats

    def search(self, query: str, k: int) -> list[Hit]:
        return self.retriever.search(query, k)

    def warm_up(self, questions: Sequence[str]) -> None:
        """Called once with a run's questions before any is timed: the dense retriever encodes the new ones."""
        warm = getattr(self.retriever, "warm_up", None)
        if warm:
            warm(questions)

    def answer(self, question: str) -> Answer:
        started = time.perf_counter()
        hits = self.search(question, self.config.k_retrieve)
        retrieved = time.perf_counter()
        context = self.choose_context(question, hits)
        chosen = time.perf_counter()
        generation = self.generator.generate(question, [hit.chunk for hit in context])
        done = time.perf_counter()
        return Answer(
            question=question,
            text=generation.text,
            citations=generation.citations,
            abstained=generation.abstained,
            retrieved=tuple(hits),
            context=tuple(hit.chunk.chunk_id for hit in context),
            usage=generation.usage,
            latency_ms={
                "retrieve": (retrieved - started) * 1000,
                "generate": (done - chosen) * 1000,
                "total": (done - started) * 1000,
            },
        )

    def choose_context(self, question: str, hits: list[Hit]) -> list[Hit]:
        """The hits handed to the generator, best first; always a subset of `hits`."""
        # TODO(task 3): choose context, not just the first k_context hits: rerank, skip chunks of
        #   superseded documents (self.documents[hit.chunk.doc_id].status), drop near-duplicates, and
        #   stop at config.context_budget_chars. E.g. hits [old-pricing#2, pricing#2, pricing#2-copy, faq#7]
        #   with a 1,500-character budget -> [pricing#2, faq#7]. Then remove context_budget_chars from
        #   NOT_READ_YET above.
        return hits[: self.config.k_context]
