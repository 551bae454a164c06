"""Scoring: join one golden question with one pipeline output, and summarize a run's samples.

score_sample first checks what the pipeline returned against the contract (harness/checks.py): an
answer with problems is recorded as the error "malformed: <field>: <problem>; ..." and scored as an
empty answer. It records the answer as a Sample (harness/records.py), decides which metrics apply and
computes them with harness/metrics.py, and names the first stage that went wrong.
What a chunk says is always read from the corpus (SourceCorpus: document.text[start:end]), never from
the text the pipeline reports: whether a chunk covers an evidence quote (retrieval and citation
metrics, failure labels) and what a cited source holds (grounded_values). The reported text stays in
the Sample, for reports.
Everything is computed from the recorded Sample alone, so re-scoring a samples.jsonl line gives the
same numbers. summarize aggregates samples into a Summary.
Left out on purpose: running the pipeline, reading or writing run files, and printing reports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from exercise.contracts import Answer, Chunk
from harness import metrics as m
from harness.checks import answer_problems, malformed_error
from harness.golden import GoldenQuestion
from harness.records import Sample, Summary

FAILURE_LABELS = (
    "error",  # the pipeline raised, timed out, or returned an answer that breaks the contract (malformed)
    "abstained_wrongly",  # answerable, but the pipeline abstained
    "answered_unanswerable",  # unanswerable, but the pipeline answered
    "retrieval_miss",  # no recorded chunk (the top 20, the context, the cited) covers any evidence item
    "context_miss",  # evidence was retrieved but none of it reached the generator's context
    "generation_miss",  # the context held evidence but the answer misses a fact
    "citation_miss",  # every fact is in the answer but no cited chunk covers evidence
    "ungrounded",  # the answer states a value (a number, date, id...) that none of its cited chunks holds
    "ok",  # nothing above went wrong (for an unanswerable question: it abstained)
)
LATENCY_PERCENTILES = {"p50": 50, "p95": 95, "p99": 99}


@dataclass(frozen=True)
class SourceCorpus:
    """What scoring reads from the corpus itself: each document's text and the canaries planted in some."""

    texts: Mapping[str, str]  # doc_id -> Document.text
    canaries: Mapping[str, str]  # doc_id -> canary (harness/corpus.read_canaries)

    def source(self, chunk: Chunk) -> str:
        """The corpus text a chunk stands for, document.text[start:end]; "" when the document is unknown
        or the span does not fit it (such a chunk grounds nothing)."""
        text = self.texts.get(chunk.doc_id)
        if text is None or not 0 <= chunk.start < chunk.end <= len(text):
            return ""
        return text[chunk.start:chunk.end]

    def sourced(self, chunk: Chunk) -> Chunk:
        """The chunk with its text replaced by source(chunk): what metrics.covers reads when scoring."""
        return Chunk(chunk.chunk_id, chunk.doc_id, self.source(chunk), chunk.start, chunk.end)

    def all_sourced(self, chunks: Sequence[Chunk]) -> tuple[Chunk, ...]:
        return tuple(self.sourced(chunk) for chunk in chunks)


def _covers_any(chunks: Sequence[Chunk], golden: GoldenQuestion, corpus: SourceCorpus) -> bool:
    return any(m.covers(chunk, item) for chunk in corpus.all_sourced(chunks) for item in golden.evidence)


def score_sample(golden: GoldenQuestion, answer: Answer | object | None, error: str | None,
                 corpus: SourceCorpus, wall_ms: float) -> Sample:
    """One samples.jsonl record: what the pipeline returned, every applicable score, and the failure label.

    A question that raised or timed out (answer None) is scored as an empty answer: a scored failure,
    not a gap in the means. So is an answer that breaks the contract (checks.answer_problems), with the
    error "malformed: <field>: <problem>; <field>: <problem>" naming every problem.
    """
    if answer is not None:
        problems = answer_problems(answer, corpus.texts)
        if problems:
            answer, error = None, malformed_error(problems)
    sample = Sample.from_answer(golden.id, golden.tags, golden.answerable, golden.question, answer, error, wall_ms)
    if golden.retrieval_only:  # the document ranking, as deep as the document-level metrics read
        hits = answer.retrieved if answer is not None else ()
        sample = dataclasses.replace(sample, retrieval_only=True,
                                     ranked_docs=tuple(m.top_k_docs([str(h.chunk.doc_id) for h in hits], m.DOC_DEPTH)))
    return dataclasses.replace(sample, scores=score_question(golden, sample, corpus),
                               failure=attribute_failure(golden, sample, corpus))


def score_question(golden: GoldenQuestion, sample: Sample, corpus: SourceCorpus) -> dict[str, float]:
    """Score one question, returning only the metrics that apply to it.

    Answerable: retrieval metrics on the top SCORED_DEPTH, citation_precision/recall, fact_recall,
    answer_f1. Something cited: citation_valid. An answer (not an abstention) that states a value:
    grounded_values against the corpus text of the cited chunks. Always: abstention_accuracy. A
    context chunk from a document with a canary: injection_resistance, checked against every canary.
    Citation and context ids resolve through every recorded hit, so a cited chunk ranked below the
    top SCORED_DEPTH still counts; an id that was never retrieved covers nothing. Whether a chunk covers
    evidence is decided on its corpus span (SourceCorpus.sourced), not on the text the pipeline reported.
    """
    if golden.retrieval_only:
        return score_judged(golden, sample)
    scores: dict[str, float] = {}
    if golden.answerable:
        if not golden.evidence or not golden.facts:
            raise ValueError(f"golden question {golden.id!r} (line {golden.line}) is answerable but has no "
                             "evidence or no facts; add them, or mark it answerable: false")
        top = corpus.all_sourced(sample.top)
        for k in m.RETRIEVAL_KS:
            scores[m.EVIDENCE_RECALL_AT[k]] = m.evidence_recall_at_k(top, golden.evidence, k)
        for k in m.RETRIEVAL_KS:
            scores[m.DOC_RECALL_AT[k]] = m.doc_recall_at_k(top, golden.evidence, k)
        scores[m.MRR_AT_10] = m.mrr_at_k(top, golden.evidence, 10)
        scores[m.NDCG_AT_10] = m.ndcg_at_k(top, golden.evidence, 10)
        cited = corpus.all_sourced(sample.cited_chunks)
        scores[m.CITATION_PRECISION] = m.citation_precision(cited, golden.evidence)
        scores[m.CITATION_RECALL] = m.citation_recall(cited, golden.evidence)
        scores[m.FACT_RECALL] = m.fact_recall(sample.answer, golden.facts)
        scores[m.ANSWER_F1] = m.answer_f1(sample.answer, golden.answer)
    if sample.citations:
        scores[m.CITATION_VALID] = m.citation_valid(sample.citations, sample.context)
    grounded = None if sample.abstained else m.grounded_values(sample.answer, _cited_sources(sample, corpus))
    if grounded is not None:  # an answer that states no value is left out of the mean
        scores[m.GROUNDED_VALUES] = grounded
    scores[m.ABSTENTION_ACCURACY] = m.abstention_correct(sample.abstained, golden.answerable)
    if any(chunk.doc_id in corpus.canaries for chunk in sample.context_chunks):
        scores[m.INJECTION_RESISTANCE] = m.injection_resisted(sample.answer, corpus.canaries.values())
    return scores


def score_judged(golden: GoldenQuestion, sample: Sample) -> dict[str, float]:
    """A retrieval-only question's scores: doc_ndcg@10 and doc_recall@100 over sample.ranked_docs, with the
    graded relevance of its evidence. Answer, citation and chunk-level metrics do not apply and are left out."""
    judgements = {item.doc_id: item.relevance for item in golden.evidence}
    return {m.DOC_NDCG_AT_10: m.doc_ndcg_at_k(sample.ranked_docs, judgements, 10),
            m.DOC_RECALL_AT_100: m.judged_recall_at_k(sample.ranked_docs, judgements, m.DOC_DEPTH)}


def _cited_sources(sample: Sample, corpus: SourceCorpus) -> list[str]:
    return [corpus.source(chunk) for chunk in sample.cited_chunks]


def attribute_failure(golden: GoldenQuestion, sample: Sample, corpus: SourceCorpus) -> str:
    """The first label of FAILURE_LABELS that holds for this question (see the comments there);
    an unanswerable question stops after the abstention check."""
    if sample.error is not None:
        return "error"
    if golden.retrieval_only:  # searched, not answered: its ranking found a judged document, or not
        judged = {item.doc_id for item in golden.evidence}
        return "ok" if judged.intersection(sample.ranked_docs) else "retrieval_miss"
    if golden.answerable and sample.abstained:
        return "abstained_wrongly"
    if not golden.answerable:
        return "ok" if sample.abstained else "answered_unanswerable"
    if not _covers_any([hit.chunk for hit in sample.retrieved], golden, corpus):
        return "retrieval_miss"
    if not _covers_any(sample.context_chunks, golden, corpus):
        return "context_miss"
    if m.fact_recall(sample.answer, golden.facts) < 1.0:
        return "generation_miss"
    if not _covers_any(sample.cited_chunks, golden, corpus):
        return "citation_miss"
    if m.ungrounded_values(sample.answer, _cited_sources(sample, corpus)):
        return "ungrounded"
    return "ok"


def _means(samples: Sequence[Sample]) -> tuple[dict[str, float], dict[str, int]]:
    """({metric: mean over the samples whose scores hold it}, {metric: that count}), in METRIC_NAMES order."""
    present = {name for sample in samples for name in sample.scores}
    order = [n for n in m.METRIC_NAMES if n in present] + sorted(present - set(m.METRIC_NAMES))
    values = {name: [s.scores[name] for s in samples if name in s.scores] for name in order}
    return {name: m.mean(v) for name, v in values.items()}, {name: len(v) for name, v in values.items()}


def _check_sample(sample: Sample) -> None:
    for name, value in sample.scores.items():
        if math.isnan(value):
            raise ValueError(f"sample {sample.id!r}: score {name!r} is NaN; fix the metric or drop the key "
                             "where the metric does not apply")
    if sample.failure not in FAILURE_LABELS:
        raise ValueError(f"sample {sample.id!r}: failure {sample.failure!r} is not one of {FAILURE_LABELS}")


def summarize(samples: Sequence[Sample]) -> Summary:
    """Aggregate samples into a Summary.

    metrics: each score's mean over the samples that have it (n: how many), plus abstention_precision,
    abstention_recall and abstention_f1 over the answered samples without an error (left out when every question is
    retrieval-only; counts["retrieval_only"] says how many are). per_tag: the question count "n" and the
    same score means, per tag. failures: a count for every label, zeros included. latency_ms:
    {stage: {"p50", "p95", "p99"}} over samples[1:] (the first question warms up caches), or over the
    only sample. No samples, a NaN score or an unknown label raises ValueError.
    """
    if not samples:
        raise ValueError("no samples to summarize; the run file has no sample lines")
    for sample in samples:
        _check_sample(sample)

    metrics, n = _means(samples)
    answered = [s for s in samples if not s.retrieval_only]  # retrieval-only questions are never answered
    if answered:
        pairs = [(s.abstained, s.answerable) for s in answered if s.error is None]
        metrics[m.ABSTENTION_PRECISION] = m.abstention_precision(pairs)
        metrics[m.ABSTENTION_RECALL] = m.abstention_recall(pairs)
        metrics[m.ABSTENTION_F1] = m.abstention_f1(pairs)
        n[m.ABSTENTION_PRECISION] = sum(abstained for abstained, _ in pairs)
        n[m.ABSTENTION_RECALL] = sum(not answerable for _, answerable in pairs)
        n[m.ABSTENTION_F1] = len(pairs)

    tags = sorted({tag for s in samples for tag in s.tags})
    per_tag = {tag: {"n": sum(tag in s.tags for s in samples), **_means([s for s in samples if tag in s.tags])[0]}
               for tag in tags}

    failures = {label: sum(s.failure == label for s in samples) for label in FAILURE_LABELS}

    timed = samples[1:] if len(samples) > 1 else samples
    stages = sorted({stage for s in timed for stage in s.latency_ms})
    latency = {}
    for stage in stages:
        values = [s.latency_ms[stage] for s in timed if stage in s.latency_ms]
        latency[stage] = {name: m.percentile(values, p) for name, p in LATENCY_PERCENTILES.items()}

    counts = {
        "questions": len(samples),
        "errors": sum(s.error is not None for s in samples),
        "answerable": sum(s.answerable for s in samples),
        **({"retrieval_only": len(samples) - len(answered)} if len(answered) < len(samples) else {}),
    }
    return Summary(metrics, n, per_tag, failures, latency, counts, **usage_totals(samples))


def usage_totals(samples: Sequence[Sample]) -> dict:
    """Tokens (p50, p95 and sum per question, prompt and completion), cost (sum and per 1,000 questions),
    language-model calls and cache hits, over every sample; a generator that calls no model gives zeros."""
    tokens = {}
    for kind in ("prompt", "completion"):
        values = [float(getattr(s.usage, f"{kind}_tokens")) for s in samples]
        tokens[kind] = {"p50": m.percentile(values, 50), "p95": m.percentile(values, 95), "sum": math.fsum(values)}
    spent = math.fsum(s.usage.cost_usd for s in samples)
    return {"tokens": tokens, "cost_usd": {"sum": spent, "per_1000_questions": spent / len(samples) * 1000},
            "llm_calls": sum(s.usage.calls for s in samples), "llm_cache_hits": sum(s.usage.cached for s in samples)}
