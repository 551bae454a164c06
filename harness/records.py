"""The records the harness writes and reads: a scored sample (one samples.jsonl line) and a summary.

Each record is frozen and has one to_json() and one from_json(); every other module reads fields,
never string keys. The JSON field names below are a contract that other tools read: keep them.
answer_to_json and answer_from_json carry a pipeline's Answer from the grader's worker to the grader
without coercing anything, so a malformed answer arrives malformed and answer_from_json raises
MalformedAnswer naming every problem (harness/checks.py words them).
Left out on purpose: computing scores (scoring.py) and reading or writing files (runner.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from exercise.contracts import SCORED_DEPTH, Answer, Chunk, Hit, Usage
from harness.checks import ANSWER_FIELDS, CHUNK_FIELDS, Opaque, answer_problems

USAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Usage))

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
    return tuple(RankedHit(rank, _chunk(hit.chunk), float(hit.score)) for rank, hit in enumerate(retrieved, start=1)
                 if rank <= SCORED_DEPTH or hit.chunk.chunk_id in wanted)


def _chunk(chunk: Any) -> Chunk:
    """The harness's own Chunk with the same fields (a candidate's pipeline may have its own Chunk class)."""
    return Chunk(str(chunk.chunk_id), str(chunk.doc_id), str(chunk.text), int(chunk.start), int(chunk.end))


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
    retrieval_only: bool = False  # a retrieval-only question: searched, not answered (harness/golden.py)
    ranked_docs: tuple[str, ...] = ()  # retrieval-only: the first metrics.DOC_DEPTH distinct doc ids of the ranking

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
        usage = usage_from_json(usage_to_json(getattr(answer, "usage", None)))
        return cls(id, question, tuple(tags), answerable, hits, context, answer.text, citations,
                   bool(answer.abstained), latency, error, usage=usage,
                   context_chars=sum(len(chunk.text) for chunk in resolve(context, hits)))

    def to_json(self) -> JSON:
        return {"id": self.id, "question": self.question, "tags": list(self.tags), "answerable": self.answerable,
                "retrieved": [hit.to_json() for hit in self.retrieved], "context": list(self.context),
                "answer": self.answer, "citations": list(self.citations), "abstained": self.abstained,
                "latency_ms": dict(self.latency_ms), "scores": dict(self.scores), "failure": self.failure,
                "error": self.error, "usage": usage_to_json(self.usage), "context_chars": self.context_chars,
                **({"retrieval_only": True, "ranked_docs": list(self.ranked_docs)} if self.retrieval_only else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        hits = tuple(RankedHit.from_json({"rank": rank, **hit}) for rank, hit in enumerate(data["retrieved"], start=1))
        return cls(id=str(data["id"]), question=str(data["question"]), tags=tuple(data["tags"]),
                   answerable=bool(data["answerable"]), retrieved=hits, context=tuple(data["context"]),
                   answer=str(data["answer"]), citations=tuple(data["citations"]), abstained=bool(data["abstained"]),
                   latency_ms={str(k): float(v) for k, v in data["latency_ms"].items()}, error=data.get("error"),
                   scores={str(k): float(v) for k, v in data["scores"].items()}, failure=str(data["failure"]),
                   usage=usage_from_json(data.get("usage")), context_chars=int(data.get("context_chars", 0)),
                   retrieval_only=bool(data.get("retrieval_only", False)),
                   ranked_docs=tuple(str(d) for d in data.get("ranked_docs", ())))


class MalformedAnswer(ValueError):
    """An answer the worker sent that breaks the contract; str() is "<field>: <problem>; <field>: <problem>"."""

    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


def plain(value: Any) -> Any:
    """A JSON image of a value that keeps its kind, so the receiver can tell what was wrong with it: numpy
    scalars become Python ones, tuples lists, NaN and infinities stay (json writes NaN and Infinity), and a
    value JSON cannot hold becomes {"$type": its type's name}.

    >>> plain(("a", 1, float("inf"))), plain("a.md#1"), plain({1, 2})
    (['a', 1, inf], 'a.md#1', {'$type': 'set'})
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    return {OPAQUE_KEY: type(value).__name__}


OPAQUE_KEY = "$type"


def _unplain(value: Any) -> Any:
    """plain's image read back: {"$type": name} becomes checks.Opaque(name), lists stay lists."""
    if isinstance(value, Mapping):
        if set(value) == {OPAQUE_KEY} and isinstance(value[OPAQUE_KEY], str):
            return Opaque(value[OPAQUE_KEY])
        return {key: _unplain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unplain(item) for item in value]
    return value


def _hit_to_json(rank: int, hit: Any) -> JSON:
    """One hit, flat as RankedHit.to_json: only the fields the hit has, each as plain() gives it."""
    chunk = getattr(hit, "chunk", None)
    fields = {name: getattr(chunk, name) for name in CHUNK_FIELDS if hasattr(chunk, name)}
    if hasattr(hit, "score"):
        fields["score"] = hit.score
    return {"rank": rank, **{name: plain(value) for name, value in fields.items()}}


def answer_to_json(answer: Any) -> JSON:
    """The parts of an Answer a run records, as plain JSON (duck-typed: any object with Answer's fields).

    Nothing is coerced: a field keeps its kind (a str citations stays a str) and a field the object lacks
    is left out, so answer_from_json sees every problem the object has. Hits as recorded_hits picks them,
    each with its rank.
    """
    if not any(hasattr(answer, name) for name in ANSWER_FIELDS):  # e.g. a dict: say what it was
        return {OPAQUE_KEY: type(answer).__name__}
    retrieved = getattr(answer, "retrieved", None)
    hits = isinstance(retrieved, (list, tuple))
    data = {name: plain(getattr(answer, name)) for name in ANSWER_FIELDS
            if hasattr(answer, name) and not (hits and name == "retrieved")}
    usage = getattr(answer, "usage", None)
    if usage is not None:
        data["usage"] = {name: plain(getattr(usage, name)) for name in USAGE_FIELDS if hasattr(usage, name)}
    if hits:
        referenced = {cid for name in ("context", "citations") if isinstance(data.get(name), list)
                      for cid in data[name] if isinstance(cid, str)}
        data["retrieved"] = [_hit_to_json(rank, hit) for rank, hit in enumerate(retrieved, start=1)
                             if rank <= SCORED_DEPTH or _chunk_id(hit) in referenced]
    return data


def _chunk_id(hit: Any) -> str | None:
    chunk_id = getattr(getattr(hit, "chunk", None), "chunk_id", None)
    return chunk_id if isinstance(chunk_id, str) else None


MAX_RANK = 10_000  # the deepest rank a transported hit may claim
GAP = Hit(Chunk("", "", "", 0, 0), 0.0)  # stands at each rank answer_to_json left out


def _view_hit(data: Any) -> Any:
    """A transported hit as an object with .chunk and .score, lacking exactly the fields the JSON lacks."""
    if not isinstance(data, Mapping):
        return _unplain(data)
    chunk = {name: _unplain(data[name]) for name in CHUNK_FIELDS if name in data}
    fields = {"chunk": SimpleNamespace(**chunk)} if chunk else {}  # no chunk field at all: the hit had no chunk
    return SimpleNamespace(**fields, **({"score": _unplain(data["score"])} if "score" in data else {}))


def _placed(retrieved: Any) -> tuple[Any, list[str]]:
    """The transported hits at the positions of their ranks, gaps filled with GAP, and the problem with the ranks
    if any (the hits then stay in the order sent, so their other problems are still found)."""
    if not isinstance(retrieved, list):
        return _unplain(retrieved), []
    ranks = [hit.get("rank") if isinstance(hit, Mapping) else None for hit in retrieved]
    if not all(isinstance(rank, int) and not isinstance(rank, bool) for rank in ranks) \
            or ranks != sorted(set(ranks)) or any(not 1 <= rank <= MAX_RANK for rank in ranks):
        return [_view_hit(hit) for hit in retrieved], \
            [f"retrieved: each hit needs a rank; ranks must be distinct, ascending and from 1 to {MAX_RANK}"]
    by_rank = dict(zip(ranks, retrieved))
    return [_view_hit(by_rank[rank]) if rank in by_rank else GAP for rank in range(1, max(ranks, default=0) + 1)], []


def answer_from_json(question: str, data: Any) -> Answer:
    """Rebuild an Answer from answer_to_json's output, coercing nothing. Each hit goes back to the position of
    its rank: the ranks answer_to_json left out are filled with empty hits (GAP: no document, no text), which
    cover nothing and are not recorded again, so a chunk cited at rank 23 is recorded at rank 23.

    MalformedAnswer (a ValueError) when the JSON breaks the contract: its message lists every problem as
    "<field>: <problem>", joined by "; ", exactly as harness/checks.py words them for an in-process answer
    (less the check of a chunk's end against its document, which scoring makes with the corpus).
    """
    if not isinstance(data, Mapping):
        raise MalformedAnswer([f"answer: a {type(data).__name__} is not a JSON object with Answer's fields"])
    if isinstance(_unplain(data), Opaque):  # answer_to_json was handed no Answer at all
        raise MalformedAnswer(answer_problems(_unplain(data), None))
    retrieved, problems = _placed(data.get("retrieved"))
    fields = {name: _unplain(data[name]) for name in ANSWER_FIELDS if name in data}
    if "retrieved" in data:
        fields["retrieved"] = retrieved
    usage = _unplain(data["usage"]) if "usage" in data else None
    view = SimpleNamespace(**fields, usage=SimpleNamespace(**usage) if isinstance(usage, dict) else usage)
    problems += answer_problems(view, None)
    if problems:
        raise MalformedAnswer(problems)
    hits = tuple(hit if hit is GAP else Hit(Chunk(*(hit.chunk.__dict__[name] for name in CHUNK_FIELDS)),
                                            float(hit.score)) for hit in retrieved)
    return Answer(question=question, text=data["text"], citations=tuple(data["citations"]),
                  abstained=data["abstained"], retrieved=hits, context=tuple(data["context"]),
                  latency_ms={key: float(value) for key, value in data["latency_ms"].items()},
                  usage=usage_from_json(usage))


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
