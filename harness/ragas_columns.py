"""ragas 0.4.3's own no-LLM scores for a run, computed offline beside ragkata's metrics.

Where they coincide (tests/test_ragas_oracle.py checks each to 1e-9):
- ragas_id_context_recall@k (IDBasedContextRecall; retrieved ids = the first k distinct doc ids of
  the top 20 (SCORED_DEPTH), reference ids = the evidence doc ids) equals doc_recall@k on every answerable question.
- ragas_string_presence (StringPresence per fact, averaged over the facts) equals fact_recall when
  normalize_for_match changes neither the facts nor the answer and no fact is found only inside a
  longer word or number. StringPresence is a raw substring test: different case, whitespace runs or
  thousands separators ("10,000") make it lower, and a fact "4" inside "64 MiB" makes it higher.
- ragas_rouge1 (RougeScore rouge1 F-measure) equals answer_f1 when both texts are lowercase ASCII words
  and digits with no punctuation and no a/an/the, the Porter stemmer merges no two of their distinct
  words, and neither is empty. Otherwise they differ: ROUGE keeps articles, splits on punctuation
  ("don't" -> "don t", where SQuAD makes "dont"), stems ("limits" = "limit") and gives 0.0 for two empty texts.
Without a ragkata counterpart: ragas_id_context_precision@k (evidence docs / top-k docs),
ragas_exact_match (raw string equality), ragas_string_similarity (1 - normalized Levenshtein distance),
ragas_rouge_l (ROUGE-L F-measure). evidence_recall, mrr and ndcg are quote- and rank-aware; ragas's
ID metrics compare sets of ids. Left out on purpose: every ragas metric that needs an LLM or
embeddings (faithfulness, LLM context precision/recall, answer relevancy ...): they need a network.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Mapping, Sequence

os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # set before ragas loads: it must send no usage events

from ragas.dataset_schema import SingleTurnSample  # noqa: E402
from ragas.metrics.collections import ExactMatch, NonLLMStringSimilarity, RougeScore, StringPresence  # noqa: E402

with warnings.catch_warnings():
    # 0.4.3 has the ID-based metrics only in the legacy API; its deprecation note points to a
    # ragas.metrics.collections class that does not exist in this version.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ragas.metrics import IDBasedContextPrecision, IDBasedContextRecall  # noqa: E402

from harness.golden import GoldenQuestion  # noqa: E402
from harness.metrics import means_counting_nan, top_k_docs  # noqa: E402
from harness.records import Sample  # noqa: E402

_TEXT_METRICS = {  # column -> collections metric scored on (reference = golden answer, response = answer)
    "ragas_exact_match": ExactMatch(),
    "ragas_string_similarity": NonLLMStringSimilarity(),
    "ragas_rouge1": RougeScore(rouge_type="rouge1", mode="fmeasure"),
    "ragas_rouge_l": RougeScore(rouge_type="rougeL", mode="fmeasure"),
}


def ragas_scores(sample: Sample, golden: GoldenQuestion, k: int = 5) -> dict[str, float]:
    """ragas's scores for one run-file sample of an answerable question; values may be NaN.

    Calls ragas synchronously (legacy single_turn_score, collections .score), so call it from
    synchronous code, not from inside a running event loop.
    """
    doc_ids = [chunk.doc_id for chunk in sample.top]
    ids = SingleTurnSample(
        retrieved_context_ids=top_k_docs(doc_ids, k),
        reference_context_ids=list(dict.fromkeys(item.doc_id for item in golden.evidence)),
    )
    answer = sample.answer
    presence = [StringPresence().score(reference=fact, response=answer).value for fact in golden.facts]
    scores = {
        f"ragas_id_context_recall@{k}": IDBasedContextRecall().single_turn_score(ids),
        f"ragas_id_context_precision@{k}": IDBasedContextPrecision().single_turn_score(ids),
        "ragas_string_presence": sum(presence) / len(presence) if presence else math.nan,
    }
    for column, metric in _TEXT_METRICS.items():
        scores[column] = metric.score(reference=golden.answer, response=answer).value
    return {column: float(value) for column, value in scores.items()}


def ragas_columns(
    samples: Sequence[Sample], golden_by_id: Mapping[str, GoldenQuestion], k: int = 5
) -> dict[str, float]:
    """Mean of each ragas column over the answerable samples without an error, NaNs left out.

    Each NaN is counted instead, under "<column>.nan_count" (e.g. an answerable question with no
    evidence gives a NaN ragas_id_context_recall@5). A column whose every value is NaN has only its
    count. No scorable sample gives {}. A sample id missing from golden_by_id raises ValueError.
    """
    per_column: dict[str, list[float]] = {}
    for sample in samples:
        golden = golden_by_id.get(sample.id)
        if golden is None:
            raise ValueError(f"sample {sample.id!r} has no golden question; pass the golden set the run used")
        if sample.error is not None or not golden.answerable:
            continue
        for column, value in ragas_scores(sample, golden, k).items():
            per_column.setdefault(column, []).append(value)
    return means_counting_nan(per_column)
