"""The records the harness writes and reads: a scored sample (one samples.jsonl line) and a summary.

Each record is frozen and has one to_json() and one from_json(); every other module reads fields,
never string keys. The JSON field names below are a contract that other tools read: keep them.
Left out on purpose: computing scores (scoring.py) and reading or writing files (runner.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from exercise.contracts import SCORED_DEPTH, Answer, Chunk, Hit, Usage

JSON = dict[str, Any]


@dataclass(frozen=True)
class RankedHit:
    """A retrieved chunk as recorded: its rank in the pipeline's ranking (from 1), the chunk and its score."""

    rank: int
    chunk: Chunk
    score: float

    def to_json(self) -> JSON:
        c = self.chunk
        return {"rank": self.rank, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "text": c.text,
                "start": c.start, "end": c.end, "score": self.score}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RankedHit:
        chunk = Chunk(str(data["chunk_id"]), str(data["doc_id"]), str(data["text"]),
                      int(data.get("start", 0)), int(data.get("end", 0)))
        return cls(int(data["rank"]), chunk, float(data["score"]))


def recorded_hits(retrieved: Sequence[Hit], referenced: Sequence[str]) -> tuple[RankedHit, ...]:
    """The hits a run records: the top SCORED_DEPTH, plus any later hit whose id is in `referenced`
    (the context and the citations), so that a cited chunk at rank 23 is still known to the scorer.

    >>> hits = [Hit(Chunk(f"c{i}", "d", "", 0, 0), 1.0) for i in range(1, 31)]
    >>> [h.rank for h in recorded_hits(hits, ["c23"])][-2:]
    [20, 23]
    """
    wanted = set(referenced)
    return tuple(RankedHit(rank, hit.chunk, float(hit.score)) for rank, hit in enumerate(retrieved, start=1)
                 if rank <= SCORED_DEPTH or hit.chunk.chunk_id in wanted)


def usage_to_json(usage: Any) -> JSON:
    """A Usage as plain JSON (duck-typed, so a candidate's own Usage class works); None gives zeros."""
    usage = usage if usage is not None else Usage()
    return {"prompt_tokens": int(usage.prompt_tokens), "completion_tokens": int(usage.completion_tokens),
            "cost_usd": float(usage.cost_usd), "cached": bool(usage.cached), "calls": int(getattr(usage, "calls", 0))}


def usage_from_json(data: Mapping[str, Any] | None) -> Usage:
    data = data or {}
    return Usage(int(data.get("prompt_tokens", 0)), int(data.get("completion_tokens", 0)),
                 float(data.get("cost_usd", 0.0)), bool(data.get("cached", False)), int(data.get("calls", 0)))


def resolve(ids: Sequence[str], hits: Sequence[RankedHit]) -> tuple[Chunk, ...]:
    """The recorded chunk for each id, in id order. An id that was never retrieved becomes an empty chunk
    with no document: it covers nothing but still counts (e.g. in citation_precision's denominator)."""
    by_id = {hit.chunk.chunk_id: hit.chunk for hit in hits}
    return tuple(by_id.get(cid) or Chunk(cid, "", "", 0, 0) for cid in ids)


@dataclass(frozen=True)
class Sample:
    """One question as a run records it: what the pipeline returned, its scores and its failure label."""

    id: str
    question: str
    tags: tuple[str, ...]
    answerable: bool
    retrieved: tuple[RankedHit, ...]  # see recorded_hits
    context: tuple[str, ...]  # chunk ids given to the generator
    answer: str
    citations: tuple[str, ...]
    abstained: bool
    latency_ms: Mapping[str, float]  # per stage, plus "total"
    error: str | None = None  # the exception or time-out, when the pipeline gave no answer
    scores: Mapping[str, float] = field(default_factory=dict)  # only the metrics that apply (scoring.py)
    failure: str = ""  # one of scoring.FAILURE_LABELS
    usage: Usage = Usage()  # the language model's tokens and cost; zeros for a generator that calls none
    context_chars: int = 0  # characters of context handed to the generator

    @property
    def top(self) -> tuple[Chunk, ...]:
        """The scored ranking: the chunks ranked 1..SCORED_DEPTH, best first."""
        return tuple(hit.chunk for hit in self.retrieved if hit.rank <= SCORED_DEPTH)

    @property
    def context_chunks(self) -> tuple[Chunk, ...]:
        return resolve(self.context, self.retrieved)

    @property
    def cited_chunks(self) -> tuple[Chunk, ...]:
        return resolve(self.citations, self.retrieved)

    @classmethod
    def from_answer(cls, id: str, tags: Sequence[str], answerable: bool, question: str, answer: Answer | None,
                    error: str | None, wall_ms: float) -> Sample:
        """An unscored sample; a question with no answer (it raised or timed out) records an empty one."""
        if answer is None:
            return cls(id, question, tuple(tags), answerable, (), (), "", (), False, {"total": wall_ms}, error)
        latency = {str(k): float(v) for k, v in answer.latency_ms.items()}
        latency.setdefault("total", wall_ms)
        context, citations = tuple(answer.context), tuple(answer.citations)
        hits = recorded_hits(answer.retrieved, context + citations)
        return cls(id, question, tuple(tags), answerable, hits, context, answer.text, citations,
                   bool(answer.abstained), latency, error, usage=usage_from_json(usage_to_json(answer.usage)),
                   context_chars=sum(len(chunk.text) for chunk in resolve(context, hits)))

    def to_json(self) -> JSON:
        return {"id": self.id, "question": self.question, "tags": list(self.tags), "answerable": self.answerable,
                "retrieved": [hit.to_json() for hit in self.retrieved], "context": list(self.context),
                "answer": self.answer, "citations": list(self.citations), "abstained": self.abstained,
                "latency_ms": dict(self.latency_ms), "scores": dict(self.scores), "failure": self.failure,
                "error": self.error, "usage": usage_to_json(self.usage), "context_chars": self.context_chars}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        hits = tuple(RankedHit.from_json({"rank": rank, **hit}) for rank, hit in enumerate(data["retrieved"], start=1))
        return cls(id=str(data["id"]), question=str(data["question"]), tags=tuple(data["tags"]),
                   answerable=bool(data["answerable"]), retrieved=hits, context=tuple(data["context"]),
                   answer=str(data["answer"]), citations=tuple(data["citations"]), abstained=bool(data["abstained"]),
                   latency_ms={str(k): float(v) for k, v in data["latency_ms"].items()}, error=data.get("error"),
                   scores={str(k): float(v) for k, v in data["scores"].items()}, failure=str(data["failure"]),
                   usage=usage_from_json(data.get("usage")), context_chars=int(data.get("context_chars", 0)))


def answer_to_json(answer: Any) -> JSON:
    """The parts of an Answer a run records, as plain JSON (duck-typed: any object with Answer's fields)."""
    context, citations = [str(c) for c in answer.context], [str(c) for c in answer.citations]
    hits = [Hit(Chunk(str(h.chunk.chunk_id), str(h.chunk.doc_id), str(h.chunk.text), int(h.chunk.start),
                      int(h.chunk.end)), float(h.score)) for h in answer.retrieved]
    return {"text": str(answer.text), "citations": citations, "abstained": bool(answer.abstained),
            "retrieved": [hit.to_json() for hit in recorded_hits(hits, context + citations)], "context": context,
            "latency_ms": {str(k): float(v) for k, v in dict(answer.latency_ms).items()},
            "usage": usage_to_json(getattr(answer, "usage", None))}


MAX_RANK = 10_000  # the deepest rank a transported hit may claim


def answer_from_json(question: str, data: Mapping[str, Any]) -> Answer:
    """Rebuild an Answer from answer_to_json's output. Each hit goes back to the position of its rank:
    the ranks answer_to_json left out are filled with empty hits (no document, no text), which cover
    nothing and are not recorded again, so a chunk cited at rank 23 is recorded at rank 23.
    KeyError, TypeError or ValueError if malformed."""
    hits = [RankedHit.from_json(hit) for hit in data["retrieved"]]
    ranks = [h.rank for h in hits]
    if ranks != sorted(set(ranks)) or any(not 1 <= rank <= MAX_RANK for rank in ranks):
        raise ValueError(f"retrieved ranks must be distinct, ascending and from 1 to {MAX_RANK}")
    by_rank = {h.rank: Hit(h.chunk, h.score) for h in hits}
    gap = Hit(Chunk("", "", "", 0, 0), 0.0)
    retrieved = tuple(by_rank.get(rank, gap) for rank in range(1, max(ranks, default=0) + 1))
    return Answer(question=question, text=str(data["text"]), citations=tuple(str(c) for c in data["citations"]),
                  abstained=bool(data["abstained"]), retrieved=retrieved,
                  context=tuple(str(c) for c in data["context"]),
                  latency_ms={str(k): float(v) for k, v in dict(data["latency_ms"]).items()},
                  usage=usage_from_json(data.get("usage")))


@dataclass(frozen=True)
class Summary:
    """Aggregates over a set of samples (scoring.summarize computes it; nothing else does)."""

    metrics: Mapping[str, float]  # metric name -> mean over the samples it applies to
    n: Mapping[str, int]  # metric name -> how many samples that mean is over (its denominator)
    per_tag: Mapping[str, Mapping[str, float]]  # tag -> {"n": questions, metric: mean}
    failures: Mapping[str, int]  # failure label -> count, zeros included
    latency_ms: Mapping[str, Mapping[str, float]]  # stage -> {"p50", "p95", "p99"}
    counts: Mapping[str, int]  # "questions", "errors", "answerable"
    tokens: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # "prompt"/"completion" -> p50, p95, sum
    cost_usd: Mapping[str, float] = field(default_factory=dict)  # "sum", "per_1000_questions"
    llm_calls: int = 0  # requests sent to a language model
    llm_cache_hits: int = 0  # answers whose reply came from the cache

    def to_json(self) -> JSON:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        """A field missing from `data` (an older or partial summary) reads as empty: {} or 0."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data},
                   **{f.name: {} for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING})


@dataclass(frozen=True)
class IndexReport:
    """The index line of summary.json: the pipeline's IndexStats plus what the harness timed around it."""

    chunks: int | None
    build_seconds: float | None  # the index build or cache load alone, as the pipeline measured it
    cached: bool | None  # None when the pipeline does not say
    pipeline_seconds: float  # the whole build_pipeline call: model load, chunking and the index
    chunks_per_second: float | None = None  # only for a build that embedded something

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IndexReport:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class RunSummary:
    """summary.json: a Summary of the run's samples and what ran: pipeline, config, inputs, environment."""

    summary: Summary
    run_id: str
    pipeline: str
    config: Mapping[str, Any]  # the Config the pipeline actually used (the reference applies its own defaults)
    git: Mapping[str, Any]  # {"commit", "dirty"}
    corpus: Mapping[str, Any]  # {"path", "sha256"}
    golden: Mapping[str, Any]  # {"path", "sha256"}
    environment: Mapping[str, Any]
    index: IndexReport
    complete: bool
    peak_rss_mb: float
    finished: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # optional sections, e.g. "ragas"

    def to_json(self) -> JSON:
        meta = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name not in ("summary", "index", "extra")}
        return {**self.summary.to_json(), **meta, "index": self.index.to_json(), **_plain(self.extra)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)} | {f.name for f in dataclasses.fields(Summary)}
        meta = {f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name not in ("summary", "index", "extra")}
        return cls(summary=Summary.from_json(data), index=IndexReport.from_json(data.get("index") or {}),
                   extra={k: v for k, v in data.items() if k not in names}, **meta)


def _plain(value: Any) -> Any:
    """Mappings and tuples as plain dicts and lists, for json.dumps."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
