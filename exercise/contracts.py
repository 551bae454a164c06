"""The pipeline's contract: the records passed between stages and the Protocol each stage keeps.

Every stage, yours or the starter's, plugs into these. Records are frozen; each stage returns one type.
Left out on purpose: how any stage works (see chunking.py, retrieval.py, generation.py, pipeline.py).
Change the implementations freely; keep these shapes, because the harness and the grader read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

SCORED_DEPTH = 20  # the harness scores the top 20 hits of Answer.retrieved; k_retrieve may not go below it


@dataclass(frozen=True)
class Document:
    """One corpus file, as harness/corpus.py loads it."""

    doc_id: str  # path relative to corpus/, e.g. "storage/guides/lifecycle.md"
    title: str
    text: str  # body text; golden evidence quotes are substrings of this
    type: str  # guide, api-reference, pricing, policy, runbook, ...
    product: str  # object-storage, queues, functions, platform
    updated: str  # ISO date, YYYY-MM-DD
    status: str  # "current" or "superseded"
    superseded_by: str | None = None  # doc id of the replacement, when superseded
    canary: str | None = None  # set on documents that carry injected instructions


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of one document."""

    chunk_id: str  # unique, e.g. "storage/guides/lifecycle.md#3"
    doc_id: str
    text: str  # what is indexed and shown to the generator (may add a heading prefix)
    start: int  # character offsets of the source span: document.text[start:end]
    end: int


@dataclass(frozen=True)
class Hit:
    """A chunk with the score a retriever gave it; higher is better."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Usage:
    """What a language model call cost; a generator that calls no model keeps the zeros."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # what the call spent: 0 when the reply came from a cache
    cached: bool = False  # True when a cached reply was used and no model was called
    calls: int = 0  # requests sent to a model for this answer (a cached reply sends none)


@dataclass(frozen=True)
class Generation:
    """What a generator returns: answer text, the chunk ids it cites, or an abstention."""

    text: str
    citations: tuple[str, ...] = ()
    abstained: bool = False
    usage: Usage = Usage()


@dataclass(frozen=True)
class Answer:
    """Everything one pipeline call produced; the harness scores this record."""

    question: str
    text: str
    citations: tuple[str, ...]  # chunk ids the answer cites
    abstained: bool
    retrieved: tuple[Hit, ...]  # ranked, best first, at least the top SCORED_DEPTH
    context: tuple[str, ...]  # chunk ids actually given to the generator
    latency_ms: Mapping[str, float] = field(default_factory=dict)  # per stage, plus "total"
    usage: Usage = Usage()  # the generation's tokens and cost (Generation.usage)


@dataclass(frozen=True)
class IndexStats:
    """What building the index cost; a pipeline exposes it as `pipeline.index_stats`."""

    chunks: int  # chunks indexed
    build_seconds: float  # time to build or load the index alone (not the model load, not chunking)
    cached: bool  # True when the embeddings came from the cache and nothing was embedded


class Chunker(Protocol):
    def chunk(self, document: Document) -> list[Chunk]:
        """Split one document into chunks whose offsets point into document.text."""
        ...


class Retriever(Protocol):
    def index(self, chunks: Sequence[Chunk]) -> None:
        """Build (or load) the index over these chunks."""
        ...

    def search(self, query: str, k: int) -> list[Hit]:
        """Return the k best hits for the query, best first."""
        ...


class Generator(Protocol):
    def generate(self, question: str, context: Sequence[Chunk]) -> Generation:
        """Answer from the context only, citing chunk ids, or abstain."""
        ...


class Pipeline(Protocol):
    """May also define warm_up(questions: list[str]) -> None, which the harness calls once, untimed, with
    every question of a run before timing any (the starter's encodes the new ones in one batch)."""

    def answer(self, question: str) -> Answer:
        """Retrieve, choose the context, generate: one Answer per question."""
        ...

    def search(self, query: str, k: int) -> list[Hit]:
        """Retrieval only, as the pipeline ranks it."""
        ...
