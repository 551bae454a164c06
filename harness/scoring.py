"""Scoring: join one golden question with one pipeline output, and summarize a run's scored lines.

score_question decides which metrics apply to a question and computes them with harness/metrics.py;
attribute_failure names the first stage that went wrong; both read the pipeline's Answer record
(exercise/contracts.py). summarize aggregates run-file lines.
Left out on purpose: running the pipeline, reading or writing run files, and printing reports.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from exercise.contracts import Answer, Chunk
from harness import metrics as m
from harness.golden import GoldenQuestion

RETRIEVAL_DEPTH = 20  # retrieval metrics read this many of the retrieved chunks

FAILURE_LABELS = (
    "error",  # the pipeline raised
    "abstained_wrongly",  # answerable, but the pipeline abstained
    "answered_unanswerable",  # unanswerable, but the pipeline answered
    "retrieval_miss",  # no retrieved chunk covers any evidence item
    "context_miss",  # evidence was retrieved but none of it reached the generator's context
    "generation_miss",  # the context held evidence but the answer misses a fact
    "citation_miss",  # every fact is in the answer but no cited chunk covers evidence
    "ok",  # nothing above went wrong (for an unanswerable question: it abstained)
)
LATENCY_PERCENTILES = {"p50": 50, "p95": 95, "p99": 99}


def _resolve(ids: Sequence[str], retrieved: Sequence[Chunk]) -> list[Chunk]:
    """The retrieved chunk for each id, in id order; an id not in `retrieved` becomes an empty chunk
    with no document, which covers nothing but still counts (e.g. in citation_precision's denominator)."""
    by_id = {chunk.chunk_id: chunk for chunk in retrieved}
    return [by_id.get(cid) or Chunk(cid, "", "", 0, 0) for cid in ids]


def _covers_any(chunks: Sequence[Chunk], golden: GoldenQuestion) -> bool:
    return any(m.covers(chunk, item) for chunk in chunks for item in golden.evidence)


def score_question(golden: GoldenQuestion, answer: Answer, canary_docs: Mapping[str, str]) -> dict[str, float]:
    """Score one question, returning only the metrics that apply to it.

    Answerable: retrieval metrics on retrieved[:20], citation_precision/recall, fact_recall, answer_f1.
    Something cited: citation_valid. Always: abstention_accuracy. A context chunk from a doc in
    canary_docs (doc_id -> canary): injection_resistance, checked against every canary.
    Citations and context ids are resolved to chunks through answer.retrieved; an id not there covers nothing.
    """
    retrieved = [hit.chunk for hit in answer.retrieved]
    scores: dict[str, float] = {}
    if golden.answerable:
        if not golden.evidence or not golden.facts:
            raise ValueError(f"golden question {golden.id!r} (line {golden.line}) is answerable but has no "
                             "evidence or no facts; add them, or mark it answerable: false")
        top = retrieved[:RETRIEVAL_DEPTH]
        for k in m.RETRIEVAL_KS:
            scores[m.EVIDENCE_RECALL_AT[k]] = m.evidence_recall_at_k(top, golden.evidence, k)
        for k in m.RETRIEVAL_KS:
            scores[m.DOC_RECALL_AT[k]] = m.doc_recall_at_k(top, golden.evidence, k)
        scores[m.MRR_AT_10] = m.mrr_at_k(top, golden.evidence, 10)
        scores[m.NDCG_AT_10] = m.ndcg_at_k(top, golden.evidence, 10)
        cited = _resolve(answer.citations, retrieved)
        scores[m.CITATION_PRECISION] = m.citation_precision(cited, golden.evidence)
        scores[m.CITATION_RECALL] = m.citation_recall(cited, golden.evidence)
        scores[m.FACT_RECALL] = m.fact_recall(answer.text, golden.facts)
        scores[m.ANSWER_F1] = m.answer_f1(answer.text, golden.answer)
    if answer.citations:
        scores[m.CITATION_VALID] = m.citation_valid(answer.citations, answer.context)
    scores[m.ABSTENTION_ACCURACY] = m.abstention_correct(answer.abstained, golden.answerable)
    if any(chunk.doc_id in canary_docs for chunk in _resolve(answer.context, retrieved)):
        scores[m.INJECTION_RESISTANCE] = m.injection_resisted(answer.text, canary_docs.values())
    return scores


def attribute_failure(golden: GoldenQuestion, answer: Answer, error: str | None) -> str:
    """The first label of FAILURE_LABELS that holds for this question (see the comments there);
    an unanswerable question stops after the abstention check.

    retrieval_miss looks at the whole answer.retrieved; context and citation ids resolve through it.
    """
    retrieved = [hit.chunk for hit in answer.retrieved]
    if error is not None:
        return "error"
    if golden.answerable and answer.abstained:
        return "abstained_wrongly"
    if not golden.answerable:
        return "ok" if answer.abstained else "answered_unanswerable"
    if not _covers_any(retrieved, golden):
        return "retrieval_miss"
    if not _covers_any(_resolve(answer.context, retrieved), golden):
        return "context_miss"
    if m.fact_recall(answer.text, golden.facts) < 1.0:
        return "generation_miss"
    if not _covers_any(_resolve(answer.citations, retrieved), golden):
        return "citation_miss"
    return "ok"


def _means(samples: Sequence[Mapping]) -> dict[str, float]:
    """{metric: mean over the samples whose scores hold it}, known metrics first in METRIC_NAMES order."""
    present = {name for sample in samples for name in sample["scores"]}
    order = [n for n in m.METRIC_NAMES if n in present] + sorted(present - set(m.METRIC_NAMES))
    return {name: m.mean(s["scores"][name] for s in samples if name in s["scores"]) for name in order}


def _check_sample(sample: Mapping) -> None:
    for name, value in sample["scores"].items():
        if math.isnan(value):
            raise ValueError(f"sample {sample['id']!r}: score {name!r} is NaN; fix the metric or drop the key "
                             "where the metric does not apply")
    if sample["failure"] not in FAILURE_LABELS:
        raise ValueError(f"sample {sample['id']!r}: failure {sample['failure']!r} is not one of {FAILURE_LABELS}")


def summarize(samples: Sequence[Mapping]) -> dict:
    """Aggregate run-file sample lines into {"metrics", "per_tag", "failures", "latency_ms", "counts"}.

    metrics: each score's mean over the samples that have it, plus abstention_precision/recall over
    the samples without an error. per_tag: the question count "n" and the same score means, per tag. failures: a count for every
    label, zeros included. latency_ms: {stage: {"p50", "p95", "p99"}} over samples[1:] (the first
    question warms up caches), or over the only sample. A NaN score or an unknown label raises ValueError.
    """
    if not samples:
        raise ValueError("no samples to summarize; the run file has no sample lines")
    for sample in samples:
        _check_sample(sample)

    metrics = _means(samples)
    pairs = [(s["abstained"], s["answerable"]) for s in samples if s["error"] is None]
    metrics[m.ABSTENTION_PRECISION] = m.abstention_precision(pairs)
    metrics[m.ABSTENTION_RECALL] = m.abstention_recall(pairs)

    tags = sorted({tag for s in samples for tag in s["tags"]})
    per_tag = {tag: {"n": sum(tag in s["tags"] for s in samples), **_means([s for s in samples if tag in s["tags"]])}
               for tag in tags}

    failures = {label: sum(s["failure"] == label for s in samples) for label in FAILURE_LABELS}

    timed = samples[1:] if len(samples) > 1 else samples
    stages = sorted({stage for s in timed for stage in s["latency_ms"]})
    latency = {}
    for stage in stages:
        values = [s["latency_ms"][stage] for s in timed if stage in s["latency_ms"]]
        latency[stage] = {name: m.percentile(values, p) for name, p in LATENCY_PERCENTILES.items()}

    counts = {
        "questions": len(samples),
        "errors": sum(s["error"] is not None for s in samples),
        "answerable": sum(bool(s["answerable"]) for s in samples),
    }
    return {"metrics": metrics, "per_tag": per_tag, "failures": failures, "latency_ms": latency, "counts": counts}
