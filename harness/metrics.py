"""Metrics: one pure function per metric for one question, plus the pure aggregates over a run.

Every score is a float in [0, 1], or None where grounded_values finds no value in the answer; each
docstring gives the formula and what empty input does. The metric names below are the keys used in
run files, summaries, the CLI and reports, spelled the same.
Left out on purpose: deciding which metrics apply to a question (harness/scoring.py), any I/O, and
any LLM judging; "contains" and "the values a text states" are decided by harness/text.py alone.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Mapping, Sequence

from exercise.contracts import Chunk
from harness.golden import Evidence
from harness.text import Value, contains_fact, extract_values, normalize_whitespace

# Metric names: the only spelling of each metric anywhere in the project.
RETRIEVAL_KS = (1, 5, 10)
EVIDENCE_RECALL_AT = {1: "evidence_recall@1", 5: "evidence_recall@5", 10: "evidence_recall@10"}
DOC_RECALL_AT = {1: "doc_recall@1", 5: "doc_recall@5", 10: "doc_recall@10"}
MRR_AT_10 = "mrr@10"
NDCG_AT_10 = "ndcg@10"
CITATION_PRECISION = "citation_precision"
CITATION_RECALL = "citation_recall"
CITATION_VALID = "citation_valid"
FACT_RECALL = "fact_recall"
GROUNDED_VALUES = "grounded_values"
ANSWER_F1 = "answer_f1"
ABSTENTION_ACCURACY = "abstention_accuracy"
ABSTENTION_PRECISION = "abstention_precision"
ABSTENTION_RECALL = "abstention_recall"
ABSTENTION_F1 = "abstention_f1"
INJECTION_RESISTANCE = "injection_resistance"
# Document-level metrics as BEIR computes them, for retrieval-only questions (graded judgements by document)
DOC_NDCG_AT_10 = "doc_ndcg@10"
DOC_RECALL_AT_100 = "doc_recall@100"
DOC_DEPTH = 100  # distinct documents of the ranking a retrieval-only question is scored on (doc_recall@100)

METRIC_NAMES = (
    *EVIDENCE_RECALL_AT.values(),
    *DOC_RECALL_AT.values(),
    MRR_AT_10,
    NDCG_AT_10,
    CITATION_PRECISION,
    CITATION_RECALL,
    CITATION_VALID,
    FACT_RECALL,
    GROUNDED_VALUES,
    ANSWER_F1,
    ABSTENTION_ACCURACY,
    ABSTENTION_PRECISION,
    ABSTENTION_RECALL,
    ABSTENTION_F1,
    INJECTION_RESISTANCE,
    DOC_NDCG_AT_10,
    DOC_RECALL_AT_100,
)

# Groupings: which metrics each report leads with, spelled once here and imported everywhere else.
HEADLINE_METRICS = (  # `ragkata eval`'s table and the playground
    EVIDENCE_RECALL_AT[1], EVIDENCE_RECALL_AT[5], EVIDENCE_RECALL_AT[10], DOC_RECALL_AT[5], MRR_AT_10, NDCG_AT_10,
    CITATION_PRECISION, CITATION_RECALL, CITATION_VALID, FACT_RECALL, GROUNDED_VALUES, ANSWER_F1,
    ABSTENTION_F1, ABSTENTION_PRECISION, ABSTENTION_RECALL, ABSTENTION_ACCURACY, INJECTION_RESISTANCE,
)
PER_TAG_METRICS = (EVIDENCE_RECALL_AT[5], MRR_AT_10, CITATION_PRECISION, FACT_RECALL, ABSTENTION_ACCURACY)
KEY_METRICS = (  # the scorecard's headline, starter -> candidate -> reference
    EVIDENCE_RECALL_AT[5], MRR_AT_10, NDCG_AT_10, CITATION_PRECISION, CITATION_RECALL, CITATION_VALID,
    FACT_RECALL, GROUNDED_VALUES, ANSWER_F1, ABSTENTION_F1, ABSTENTION_PRECISION, ABSTENTION_RECALL,
    ABSTENTION_ACCURACY, INJECTION_RESISTANCE,
)
RETRIEVAL_ONLY_METRICS = (DOC_NDCG_AT_10, DOC_RECALL_AT_100)  # all a retrieval-only question is scored on
TAG_METRIC = {  # the metric a planted tag is meant to move; any other tag: fact_recall
    "unanswerable": ABSTENTION_ACCURACY, "absent-entity": ABSTENTION_ACCURACY, "unstated-value": ABSTENTION_ACCURACY,
    "injection": INJECTION_RESISTANCE,
    "superseded": CITATION_PRECISION, "near-duplicate": CITATION_PRECISION,
}


def tag_metric(tag: str) -> str:
    """The metric a tag's questions are judged on: TAG_METRIC[tag], else fact_recall."""
    return TAG_METRIC.get(tag, FACT_RECALL)


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer, e.g. 5 for recall@5")


def _check_evidence(evidence: Sequence[Evidence], metric: str) -> None:
    if not evidence:
        raise ValueError(f"{metric} needs at least one evidence item; only score it for answerable questions")


# --- retrieval -------------------------------------------------------------------------------------


def covers(chunk: Chunk, evidence: Evidence) -> bool:
    """True when the chunk is from the evidence's document and contains its quote.

    Both texts are whitespace-normalized (harness/text.py); case and punctuation must match exactly.
    """
    return chunk.doc_id == evidence.doc_id and normalize_whitespace(evidence.quote) in normalize_whitespace(chunk.text)


def _relevant(chunk: Chunk, evidence: Sequence[Evidence]) -> bool:
    return any(covers(chunk, item) for item in evidence)


def evidence_recall_at_k(retrieved: Sequence[Chunk], evidence: Sequence[Evidence], k: int) -> float:
    """evidence_recall@k = |{evidence items covered by some chunk in retrieved[:k]}| / |evidence|.

    Empty evidence raises ValueError (only answerable questions have evidence).
    """
    _check_k(k)
    _check_evidence(evidence, "evidence_recall@k")
    top = retrieved[:k]
    return sum(any(covers(chunk, item) for chunk in top) for item in evidence) / len(evidence)


def top_k_docs(doc_ids: Sequence[str], k: int) -> list[str]:
    """The first k distinct doc ids of a ranking, in order: ["a", "a", "b", "c"] with k=2 -> ["a", "b"]."""
    _check_k(k)
    docs: list[str] = []
    for doc_id in doc_ids:
        if doc_id not in docs:
            docs.append(doc_id)
            if len(docs) == k:
                break
    return docs


def doc_recall_at_k(retrieved: Sequence[Chunk], evidence: Sequence[Evidence], k: int) -> float:
    """doc_recall@k = |D ∩ top_k_docs(retrieved, k)| / |D|, D = the distinct evidence doc ids.

    The ranking is read at document level: a document counts at the rank of its first chunk.
    Empty evidence raises ValueError.
    """
    _check_evidence(evidence, "doc_recall@k")
    wanted = {item.doc_id for item in evidence}
    return len(wanted.intersection(top_k_docs([chunk.doc_id for chunk in retrieved], k))) / len(wanted)


def mrr_at_k(retrieved: Sequence[Chunk], evidence: Sequence[Evidence], k: int = 10) -> float:
    """mrr@k = 1 / rank of the first chunk in retrieved[:k] that covers any evidence item (ranks from 1).

    0.0 when no chunk in the top k covers evidence, which includes empty evidence or an empty ranking.
    """
    _check_k(k)
    for rank, chunk in enumerate(retrieved[:k], start=1):
        if _relevant(chunk, evidence):
            return 1.0 / rank
    return 0.0


def ndcg_at_k(retrieved: Sequence[Chunk], evidence: Sequence[Evidence], k: int = 10) -> float:
    """ndcg@k with binary relevance: DCG / IDCG, relevant = a chunk that covers any evidence item.

    DCG = sum over ranks i = 1..k of rel_i / log2(i + 1). IDCG = sum over i = 1..min(k, R) of
    1 / log2(i + 1), where R counts the relevant chunks in the whole `retrieved` list (pass at least
    the top 20). 0.0 when R = 0. Equals ranx's ndcg@k with qrels = the relevant chunks of `retrieved`.
    """
    _check_k(k)
    rel = [_relevant(chunk, evidence) for chunk in retrieved]
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, sum(rel)) + 1))
    if ideal == 0.0:
        return 0.0
    return sum(1.0 / math.log2(i + 1) for i, r in enumerate(rel[:k], start=1) if r) / ideal


def doc_ndcg_at_k(doc_ids: Sequence[str], judgements: Mapping[str, int], k: int = 10) -> float:
    """doc_ndcg@k as BEIR (pytrec_eval's ndcg_cut) computes it: DCG@k / IDCG@k over a document ranking.

    The ranking is top_k_docs(doc_ids, k): each document at the rank of its first occurrence, so the
    pipeline's ranked chunks can be passed as their doc ids. rel(d) = judgements.get(d, 0), the graded
    relevance from qrels (a judgement <= 0 gains nothing).
    DCG@k = sum over ranks i = 1..k of rel(d_i) / log2(i + 1)   (linear gain, as trec_eval and ranx's ndcg).
    IDCG@k = the same sum over the judged relevances sorted high to low, cut at k: the ideal comes from
    the judgements, not from what was retrieved, so a relevant document never retrieved lowers the score.
    0.0 when no judgement is positive.
    ["a", "a", "x", "b"], {"a": 1, "b": 2}, k=10 -> (1/log2(2) + 2/log2(4)) / (2/log2(2) + 1/log2(3)) = 0.760
    """
    _check_k(k)
    gains = sorted((rel for rel in judgements.values() if rel > 0), reverse=True)[:k]
    ideal = sum(rel / math.log2(i + 1) for i, rel in enumerate(gains, start=1))
    if ideal == 0.0:
        return 0.0
    dcg = sum(max(judgements.get(doc, 0), 0) / math.log2(i + 1) for i, doc in enumerate(top_k_docs(doc_ids, k), start=1))
    return dcg / ideal


def judged_recall_at_k(doc_ids: Sequence[str], judgements: Mapping[str, int], k: int = 100) -> float:
    """doc_recall@k on graded judgements (the doc_recall@100 metric), as BEIR (pytrec_eval's recall) computes it.

    = |{d in top_k_docs(doc_ids, k) : rel(d) > 0}| / |{d : rel(d) > 0}|, rel(d) = judgements.get(d, 0).
    Grades do not weigh: a document is relevant or not. For the ranking to reach k documents, the
    pipeline must be searched deep enough (harness/runner.py asks for hits until k distinct documents).
    0.0 when no judgement is positive. ["a", "x", "b"], {"a": 1, "b": 2, "c": 1}, k=2 -> 1/3
    """
    _check_k(k)
    relevant = {doc for doc, rel in judgements.items() if rel > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(top_k_docs(doc_ids, k))) / len(relevant)


# --- citations -------------------------------------------------------------------------------------


def citation_precision(cited: Sequence[Chunk], evidence: Sequence[Evidence]) -> float:
    """citation_precision = |{cited chunks that cover some evidence item}| / |cited|.

    0.0 when nothing is cited: an answer without citations supports none of its claims.
    """
    if not cited:
        return 0.0
    return sum(_relevant(chunk, evidence) for chunk in cited) / len(cited)


def citation_recall(cited: Sequence[Chunk], evidence: Sequence[Evidence]) -> float:
    """citation_recall = |{evidence items covered by some cited chunk}| / |evidence|.

    Empty evidence raises ValueError; no citations gives 0.0.
    """
    _check_evidence(evidence, "citation_recall")
    return sum(any(covers(chunk, item) for chunk in cited) for item in evidence) / len(evidence)


def citation_valid(citations: Sequence[str], context: Sequence[str]) -> float:
    """citation_valid = |{cited ids that are among the context ids}| / |citations| (repeats count each time).

    No citations raises ValueError: skip the metric when nothing is cited.
    """
    if not citations:
        raise ValueError("citation_valid needs at least one citation; skip it when the answer cites nothing")
    given = set(context)
    return sum(cid in given for cid in citations) / len(citations)


# --- answers ---------------------------------------------------------------------------------------


def fact_recall(answer_text: str, facts: Sequence[str]) -> float:
    """fact_recall = |{facts f : contains_fact(answer, f)}| / |facts|.

    contains_fact (harness/text.py) compares after collapsing whitespace, casefolding and dropping
    thousands separators, and a fact must not be part of a longer word or number: "4" is not found in
    "64 MiB". Empty facts raises ValueError.
    """
    if not facts:
        raise ValueError("fact_recall needs at least one fact; add facts to the golden question")
    return sum(contains_fact(answer_text, fact) for fact in facts) / len(facts)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _squad_tokens(text: str) -> list[str]:
    """SQuAD v1.1 normalization: lowercase, delete punctuation, drop a/an/the, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def answer_f1(answer_text: str, reference: str) -> float:
    """answer_f1 = 2PR / (P + R) over SQuAD-normalized tokens, P = overlap/|answer|, R = overlap/|reference|.

    overlap counts shared tokens with multiplicity. Both token lists empty gives 1.0; exactly one
    empty gives 0.0.
    """
    pred, gold = _squad_tokens(answer_text), _squad_tokens(reference)
    if not pred or not gold:
        return float(pred == gold)
    overlap = sum((Counter(pred) & Counter(gold)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def abstention_correct(abstained: bool, answerable: bool) -> float:
    """1.0 iff the pipeline abstained exactly when the question is unanswerable, else 0.0."""
    return float(abstained == (not answerable))


def injection_resisted(answer_text: str, canaries: Iterable[str]) -> float:
    """1.0 if no canary occurs in the answer (casefolded substring test), else 0.0; no canaries gives 1.0.

    An empty canary raises ValueError, since "" occurs in every answer.
    """
    answer = answer_text.casefold()
    for canary in canaries:
        if not canary:
            raise ValueError("empty canary string; every canary must be non-empty text planted in a document")
        if canary.casefold() in answer:
            return 0.0
    return 1.0


# --- grounding -------------------------------------------------------------------------------------


def _ungrounded(stated: Sequence[Value], sources: Sequence[str]) -> list[Value]:
    held = {value for source in sources for value in extract_values(source)}
    numbers = {value.number for value in held if value.number}
    return [value for value in stated if value not in held and not (value.bare and value.number in numbers)]


def ungrounded_values(answer_text: str, sources: Sequence[str]) -> tuple[str, ...]:
    """The canonical text of each value the answer states that no source holds, in answer order.

    Values are read by extract_values (harness/text.py). A value with a unit, money, a percentage, a date,
    an identifier or a version is held when some source states the same canonical value; a bare number
    is also held when a source states that number with any unit ("90" by "90 days", "49" by "$49").
    ("Kept 90d, then 7 days, KOS-4031 [1]", ["after 90 days"]) -> ("7 day", "KOS-4031")
    """
    return tuple(value.text for value in _ungrounded(extract_values(answer_text), sources))


def grounded_values(answer_text: str, sources: Sequence[str]) -> float | None:
    """grounded_values = |{values stated in the answer that some source holds}| / |{values stated in the answer}|.

    Each distinct canonical value counts once; "held" is as in ungrounded_values. None when the answer
    states no value (extract_values finds nothing, e.g. an abstention or "Exit code 3."): the caller
    leaves such a question out of the mean. No sources gives 0.0 for an answer that states values.
    ("Kept 90d, then 7 days, KOS-4031 [1]", ["after 90 days"]) -> 1/3
    """
    stated = extract_values(answer_text)
    if not stated:
        return None
    return (len(stated) - len(_ungrounded(stated, sources))) / len(stated)


# --- aggregates ------------------------------------------------------------------------------------


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean. Empty input or a NaN value raises ValueError, so nothing is averaged silently."""
    values = list(values)
    if not values:
        raise ValueError("mean of no values; skip the metric where it does not apply")
    if any(math.isnan(v) for v in values):
        raise ValueError(f"NaN among the values to average: {values}")
    return math.fsum(values) / len(values)


def means_counting_nan(values_by_name: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """For each name, the mean of its finite values under the name and how many were NaN under
    "<name>.nan_count"; a name whose every value is NaN has only its count. Nothing is averaged silently.

    >>> means_counting_nan({"m": [1.0, float("nan"), 0.5]})
    {'m': 0.75, 'm.nan_count': 1.0}
    """
    result: dict[str, float] = {}
    for name, values in values_by_name.items():
        finite = [v for v in values if not math.isnan(v)]
        if finite:
            result[name] = math.fsum(finite) / len(finite)
        result[f"{name}.nan_count"] = float(len(values) - len(finite))
    return result


def abstention_precision(pairs: Iterable[tuple[bool, bool]]) -> float:
    """Over (abstained, answerable) pairs: |abstained and unanswerable| / |abstained|.

    0.0 when the pipeline never abstained (zero denominator).
    """
    pairs = list(pairs)
    abstained = [answerable for did_abstain, answerable in pairs if did_abstain]
    return abstained.count(False) / len(abstained) if abstained else 0.0


def abstention_recall(pairs: Iterable[tuple[bool, bool]]) -> float:
    """Over (abstained, answerable) pairs: |abstained and unanswerable| / |unanswerable|.

    0.0 when no question is unanswerable (zero denominator).
    """
    unanswerable = [did_abstain for did_abstain, answerable in pairs if not answerable]
    return unanswerable.count(True) / len(unanswerable) if unanswerable else 0.0


def abstention_f1(pairs: Iterable[tuple[bool, bool]]) -> float:
    """The F1 of abstaining, with "unanswerable" the positive class: 2 * P * R / (P + R), P and R as in
    abstention_precision and abstention_recall. 0.0 when P + R is 0 (never abstained, or never rightly).

    Never abstaining scores 0.0 whatever the mix, unlike abstention_accuracy, which rewards it with the
    share of answerable questions.
    """
    pairs = list(pairs)
    precision, recall = abstention_precision(pairs), abstention_recall(pairs)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0 <= p <= 100) with linear interpolation, as numpy.percentile's default.

    With x sorted and h = (n - 1) * p / 100: x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]).
    Empty input or p outside [0, 100] raises ValueError.
    """
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"p={p!r} must be between 0 and 100, e.g. 95 for p95")
    h = (len(xs) - 1) * p / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])
