"""The HTTP API's records: what each endpoint takes and returns, each with an example for /docs; a streamed /api/ask
sends AskEvent lines. Left out on purpose: behaviour (service.py, streaming.py and run_views.py build these records)."""

from __future__ import annotations

import json
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exercise.contracts import Document
from harness.golden import GoldenQuestion

MAX_QUESTION_CHARS = 2000
K_MIN, K_MAX = 1, 50


def examples(*items: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(items)})


def request_examples(*items: dict) -> ConfigDict:
    """examples(), and an unknown field is a 422 that names it (e.g. "query" sent to /api/search), not ignored."""
    return ConfigDict(json_schema_extra={"examples": list(items)}, extra="forbid")


ASK_EXAMPLE = {"question": "How long until my files move to the archive tier?", "k": 10}
STREAM_EXAMPLE = {"question": "How long until my files move to the archive tier?", "stream": True}
SEARCH_EXAMPLE = {"question": "KOS-4032 bucket name taken", "k": 5}
EVIDENCE_EXAMPLE = {"doc_id": "guides/lifecycle.md", "quote": "Objects transition to cold-vault after 90 days"}
HIT_EXAMPLE = {"rank": 1, "chunk_id": "guides/lifecycle.md#0", "doc_id": "guides/lifecycle.md",
               "text": "## Transitions\n\nObjects transition to cold-vault after 90 days ...", "start": 0, "end": 420,
               "score": 3.21, "in_context": True, "cited": True, "doc_title": "Lifecycle rules", "doc_status": "current",
               "superseded_by": None, "injection": False, "evidence": [0]}
GOLDEN_EXAMPLE = {"id": "fx-01", "question": ASK_EXAMPLE["question"], "answerable": True,
                  "answer": "After 90 days, to cold-vault.", "facts": ["90 days"], "evidence": [EVIDENCE_EXAMPLE],
                  "tags": ["paraphrase", "numeric"]}
SOURCE_EXAMPLE = {"n": 1, "chunk_id": "guides/lifecycle.md#0", "doc_id": "guides/lifecycle.md", "doc_title": "Lifecycle rules",
                  "doc_status": "current", "superseded_by": None, "injection": False,
                  "text": "## Transitions\n\nObjects transition to cold-vault after 90 days ...", "start": 0, "end": 420}
USAGE_EXAMPLE = {"prompt_tokens": 512, "completion_tokens": 24, "cost_usd": 0.0, "cached": False, "calls": 1}
SUMMARY_EXAMPLE = {"run_id": "20261122T161530-3fa9c1e", "latest": True, "finished": "2026-11-22T16:16:02+00:00",
                   "complete": True, "pipeline": "exercise", "metrics": {"evidence_recall@5": 0.62, "fact_recall": 0.48},
                   "failures": {"ok": 21, "retrieval_miss": 9}, "counts": {"questions": 30, "errors": 0},
                   "config": {"chunk_size": 800}, "git": {"commit": "3fa9c1e...", "dirty": True}}


def _not_blank(value: str, name: str, example: dict) -> str:
    if not value.strip():
        raise ValueError(f"{name} is empty; send some text, e.g. {json.dumps(example)}")
    return value


class AskRequest(BaseModel):
    model_config = request_examples(ASK_EXAMPLE, {"question": "What does KOS-4032 mean?", "golden_id": "fx-02"},
                                    STREAM_EXAMPLE)
    question: str = Field(max_length=MAX_QUESTION_CHARS, description="the question, 1 to 2,000 characters")
    k: Optional[int] = Field(None, ge=K_MIN, le=K_MAX, description="retrieved hits to return (1-50); default: all")
    golden_id: Optional[str] = Field(None, description="a dev question id, to mark hits covering its evidence; "
                                                       "when left out, a question equal to a dev question's text matches it")
    stream: bool = Field(False, description="true: answer with NDJSON lines (AskEvent) as the answer is generated: "
                                            "the context, text deltas, then the whole response")

    @field_validator("question")
    @classmethod
    def question_not_blank(cls, value: str) -> str:
        return _not_blank(value, "question", ASK_EXAMPLE)


class SearchRequest(BaseModel):
    model_config = request_examples(SEARCH_EXAMPLE)
    question: str = Field(max_length=MAX_QUESTION_CHARS, description="the question to retrieve for, as /api/ask "
                                                                     "takes it, 1 to 2,000 characters")
    k: int = Field(10, ge=K_MIN, le=K_MAX, description="hits to return (1-50)")

    @field_validator("question")
    @classmethod
    def question_not_blank(cls, value: str) -> str:
        return _not_blank(value, "question", SEARCH_EXAMPLE)


class EvidenceOut(BaseModel):
    model_config = examples(EVIDENCE_EXAMPLE)
    doc_id: str
    quote: str


class GoldenOut(BaseModel):
    model_config = examples(GOLDEN_EXAMPLE)
    id: str
    question: str
    answerable: bool
    answer: str
    facts: list[str]
    evidence: list[EvidenceOut]
    tags: list[str]

    @classmethod
    def of(cls, q: GoldenQuestion) -> "GoldenOut":
        return cls(id=q.id, question=q.question, answerable=q.answerable, answer=q.answer, facts=list(q.facts),
                   evidence=[EvidenceOut(doc_id=e.doc_id, quote=e.quote) for e in q.evidence], tags=list(q.tags))


class HitOut(BaseModel):
    model_config = examples(HIT_EXAMPLE)
    rank: int
    chunk_id: str
    doc_id: str
    text: str
    start: int = Field(description="the chunk's source span is document.text[start:end]")
    end: int
    score: Optional[float] = Field(description="the retriever's score, higher is better; null if not finite")
    in_context: bool = Field(description="the chunk was handed to the generator")
    cited: bool
    doc_title: str
    doc_status: str = Field(description="current or superseded")
    superseded_by: Optional[str]
    injection: bool = Field(description="the document carries planted instructions (a canary)")
    evidence: list[int] = Field(description="indexes of the golden question's evidence items this chunk covers")


class SourceOut(BaseModel):
    model_config = examples(SOURCE_EXAMPLE)
    n: int = Field(description="the source's number: an answer's [n] marker points here (context order, from 1)")
    chunk_id: str
    doc_id: str
    doc_title: str
    doc_status: str = Field(description="current, superseded, or unknown for a chunk of no loaded document")
    superseded_by: Optional[str]
    injection: bool = Field(description="the document carries planted instructions (a canary)")
    text: str
    start: int
    end: int


class UsageOut(BaseModel):
    model_config = examples(USAGE_EXAMPLE)
    prompt_tokens: int = Field(description="as the model's server reported them; 0 when it reported none")
    completion_tokens: int
    cost_usd: float = Field(description="what the call spent at the Config's prices; 0 for a cached reply")
    cached: bool = Field(description="the reply came from the reply cache and no model was called")
    calls: int = Field(description="requests sent to a model; 0 for the extractive generator")


class AskResponse(BaseModel):
    model_config = examples({"question": ASK_EXAMPLE["question"], "answer": "Objects transition to cold-vault after 90 days.",
                             "citations": ["guides/lifecycle.md#0"], "abstained": False, "retrieved": [HIT_EXAMPLE],
                             "context": ["guides/lifecycle.md#0"], "sources": [SOURCE_EXAMPLE], "golden": GOLDEN_EXAMPLE,
                             "latency_ms": {"retrieve": 1.9, "generate": 0.4, "total": 2.4}, "usage": USAGE_EXAMPLE})
    question: str
    answer: str
    citations: list[str]
    abstained: bool
    retrieved: list[HitOut]
    context: list[str]
    sources: list[SourceOut] = Field(description="the context chunks, numbered as the answer's [n] markers count")
    latency_ms: dict[str, float]
    golden: Optional[GoldenOut] = Field(description="the dev question asked, when it is one")
    usage: UsageOut


class AskEvent(BaseModel):
    """One line of a streamed /api/ask: "context" first, then "delta"s, then "answer"; or "error", which ends it."""

    model_config = examples({"event": "context", "sources": [SOURCE_EXAMPLE]}, {"event": "delta", "text": "Objects move "},
                            {"event": "error", "detail": "the pipeline raised LLMError: ..."})
    event: Literal["context", "delta", "answer", "error"]
    sources: Optional[list[SourceOut]] = Field(None, description="context: the chunks handed to the generator")
    text: Optional[str] = Field(None, description="delta: the next piece of the answer's text")
    answer: Optional[AskResponse] = Field(None, description="answer: the whole response, as without stream")
    detail: Optional[str] = Field(None, description="error: what went wrong; no answer follows")


class SearchResponse(BaseModel):
    model_config = examples({"question": SEARCH_EXAMPLE["question"], "k": 5, "hits": [HIT_EXAMPLE],
                             "latency_ms": {"search": 1.2}})
    question: str
    k: int
    hits: list[HitOut]
    latency_ms: dict[str, float]


class DocOut(BaseModel):
    model_config = examples({"doc_id": "guides/lifecycle.md", "title": "Lifecycle rules", "type": "guide",
                             "product": "object-storage", "updated": "2026-05-14", "status": "current",
                             "superseded_by": None, "canary": None, "injection": False, "text": "# Lifecycle rules\n..."})
    doc_id: str
    title: str
    type: str
    product: str
    updated: str
    status: str
    superseded_by: Optional[str]
    canary: Optional[str]
    injection: bool
    text: str

    @classmethod
    def of(cls, d: Document, registered_canary: bool) -> "DocOut":
        return cls(doc_id=d.doc_id, title=d.title, type=d.type, product=d.product, updated=d.updated, status=d.status,
                   superseded_by=d.superseded_by, canary=d.canary, injection=bool(d.canary) or registered_canary, text=d.text)


class RunSummary(BaseModel):
    model_config = examples(SUMMARY_EXAMPLE)
    run_id: str
    latest: bool = False
    finished: Optional[str] = None
    complete: bool = False
    pipeline: Optional[str] = None
    metrics: dict[str, float] = {}
    failures: dict[str, int] = {}
    counts: dict[str, int] = {}
    per_tag: dict[str, dict[str, float]] = {}
    latency_ms: dict[str, dict[str, float]] = {}
    config: dict = {}
    git: dict = {}


class RunOut(BaseModel):
    model_config = examples({"summary": SUMMARY_EXAMPLE, "samples": [{
        "id": "fx-01", "question": ASK_EXAMPLE["question"], "tags": ["paraphrase"], "answerable": True,
        "retrieved": [{"chunk_id": "guides/lifecycle.md#0", "doc_id": "guides/lifecycle.md", "text": "...", "score": 3.2,
                       "evidence": [0]}], "context": ["guides/lifecycle.md#0"], "answer": "After 90 days.",
        "citations": ["guides/lifecycle.md#0"], "abstained": False, "latency_ms": {"total": 2.1},
        "scores": {"evidence_recall@5": 1.0}, "failure": "ok", "error": None, "expected": GOLDEN_EXAMPLE}]})
    summary: RunSummary
    samples: list[dict] = Field(description="samples.jsonl lines; each hit gains `evidence`, each line `expected`")


class DeltaOut(BaseModel):
    model_config = examples({"metric": "fact_recall", "n": 30, "a": 0.41, "b": 0.55, "delta": 0.14, "low": 0.03, "high": 0.26})
    metric: str
    n: int
    a: float
    b: float
    delta: float
    low: float
    high: float


class FlipOut(BaseModel):
    model_config = examples({"id": "fx-03", "question": "How many lifecycle rules can one bucket have?",
                             "before": "retrieval_miss", "after": "ok"})
    id: str
    question: str
    before: str
    after: str


class CompareOut(BaseModel):
    model_config = examples({"a": "20261122T161530-3fa9c1e", "b": "20261122T163002-3fa9c1e",
                             "deltas": [DeltaOut.model_config["json_schema_extra"]["examples"][0]],
                             "flips": [FlipOut.model_config["json_schema_extra"]["examples"][0]]})
    a: str
    b: str
    deltas: list[DeltaOut]
    flips: list[FlipOut]


class Health(BaseModel):
    model_config = examples({"status": "ok", "pipeline": "exercise", "docs": 270, "golden": 60, "chunks": 1480,
                             "peak_rss_mb": 212.4, "uptime_s": 35.2, "token_required": False, "config": {"retriever": "bm25"},
                             "cpu_seconds": 41.7,
                             "query_batching": [{"requests": 640, "batches": 97, "texts": 640, "largest_batch": 16,
                                                 "mean_batch": 6.6}]})
    status: str
    pipeline: str
    docs: int
    golden: int
    chunks: Optional[int]
    peak_rss_mb: float
    uptime_s: float
    token_required: bool
    config: dict
    cpu_seconds: Optional[float] = Field(None, description="CPU time the server process has used, all threads")
    query_batching: Optional[list[dict]] = Field(None, description="per batched encoder: requests, batches (encode "
                                                 "calls made for them), texts, largest and mean batch; null when "
                                                 "the server runs with --no-query-batching")
    query_lookups: Optional[list[dict]] = Field(None, description="per batched query-vector cache: lookups, "
                                                "lookup_batches (cache calls made for them), largest and mean "
                                                "lookup batch; null with --no-query-batching, empty when the "
                                                "pipeline holds no cache that can be batched")


class ErrorOut(BaseModel):
    model_config = examples({"detail": "k=80 is out of range; send an integer from 1 to 50 (e.g. \"k\": 10), or leave k out"})
    detail: str


ERRORS = {status: {"model": ErrorOut, "description": text} for status, text in
          ((401, "missing or wrong token"), (404, "unknown id"), (422, "a request to fix; the detail says how"),
           (500, "the pipeline raised; the detail carries its error"))}


def explain(error: dict, example: dict) -> str:
    """One validation error as a sentence that says what to send instead."""
    field = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    kind, value = error.get("type", ""), error.get("input")
    if kind == "json_invalid":
        return f"the request body is not valid JSON; send e.g. {json.dumps(example)}"
    if kind == "missing":
        return f"{field} is missing; send a JSON object such as {json.dumps(example)}"
    if kind == "extra_forbidden":
        return f"{field} is not a field of this request; send e.g. {json.dumps(example)}"
    if field == "k":
        return f"k={value!r} is out of range; send an integer from {K_MIN} to {K_MAX} (e.g. \"k\": 10), or leave k out"
    if kind == "string_too_long":
        return f"{field} is {len(value):,} characters; the limit is {MAX_QUESTION_CHARS:,}, so shorten it"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error.get("msg")))
    return f"{field}: {error.get('msg')}; send e.g. {json.dumps(example)}"
