"""Every metric in harness/metrics.py: hand-worked cases, empty input, and oracles (ranx, numpy).

Hand cases give the arithmetic in a comment; oracle cases are generated with a fixed seed.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from ranx import Qrels, Run, evaluate

from exercise.contracts import Chunk
from harness import metrics as m
from harness.golden import Evidence

QUOTE_A = Evidence("a.md", "objects up to 5 GB")
QUOTE_B = Evidence("b.md", "retention is 30 days")


def chunk(chunk_id: str, doc_id: str, text: str = "unrelated text") -> Chunk:
    return Chunk(chunk_id, doc_id, text, 0, len(text))


HIT_A = chunk("a.md#1", "a.md", "Upload objects up to 5 GB in one request.")
HIT_B = chunk("b.md#1", "b.md", "Default retention is 30 days.")
MISS = chunk("z.md#1", "z.md")


# --- covers -------------------------------------------------------------------------------------------


def test_covers_ignores_whitespace_differences():
    spread = chunk("a.md#2", "a.md", "Upload objects\n   up to 5\tGB here.")
    assert m.covers(spread, QUOTE_A)
    assert m.covers(chunk("a.md#3", "a.md", "objects up to 5 GB"), Evidence("a.md", "  objects up\nto 5 GB "))


def test_covers_requires_same_doc_and_exact_case():
    assert not m.covers(chunk("c.md#1", "c.md", HIT_A.text), QUOTE_A)  # right text, wrong document
    assert not m.covers(chunk("a.md#4", "a.md", "Objects Up To 5 GB"), QUOTE_A)  # case differs
    assert not m.covers(chunk("a.md#5", "a.md", "objects up to 50 GB"), QUOTE_A)


# --- evidence_recall@k, doc_recall@k -----------------------------------------------------------------


def test_evidence_recall_counts_covered_items_in_top_k_hand():
    ranking = [HIT_A, MISS, HIT_B]
    assert m.evidence_recall_at_k(ranking, [QUOTE_A, QUOTE_B], 1) == 0.5  # only A in top 1: 1/2
    assert m.evidence_recall_at_k(ranking, [QUOTE_A, QUOTE_B], 2) == 0.5  # MISS adds nothing: 1/2
    assert m.evidence_recall_at_k(ranking, [QUOTE_A, QUOTE_B], 3) == 1.0  # A and B: 2/2
    assert m.evidence_recall_at_k([], [QUOTE_A], 5) == 0.0


def test_evidence_recall_rejects_empty_evidence_and_bad_k():
    with pytest.raises(ValueError):
        m.evidence_recall_at_k([HIT_A], [], 5)
    with pytest.raises(ValueError):
        m.evidence_recall_at_k([HIT_A], [QUOTE_A], 0)


def test_doc_recall_ranks_distinct_documents_hand():
    # chunk ranks a, a, z, b -> document ranks a, z, b; evidence docs {a, b} (two quotes in a).
    ranking = [HIT_A, chunk("a.md#9", "a.md"), MISS, HIT_B]
    evidence = [QUOTE_A, Evidence("a.md", "another quote"), QUOTE_B]
    assert m.doc_recall_at_k(ranking, evidence, 1) == 0.5  # docs [a]: 1/2
    assert m.doc_recall_at_k(ranking, evidence, 2) == 0.5  # docs [a, z]: 1/2
    assert m.doc_recall_at_k(ranking, evidence, 3) == 1.0  # docs [a, z, b]: 2/2 although b is chunk rank 4


def test_doc_recall_needs_no_quote_match_but_rejects_empty_evidence():
    assert m.doc_recall_at_k([chunk("a.md#7", "a.md")], [QUOTE_A], 1) == 1.0  # doc level: text ignored
    with pytest.raises(ValueError):
        m.doc_recall_at_k([HIT_A], [], 5)


def test_top_k_docs_keeps_first_occurrence_order():
    assert m.top_k_docs(["a", "a", "b", "a", "c", "d"], 3) == ["a", "b", "c"]
    assert m.top_k_docs([], 3) == []


# --- mrr@k, ndcg@k ----------------------------------------------------------------------------------------


def test_mrr_is_reciprocal_rank_of_first_covering_chunk_hand():
    assert m.mrr_at_k([MISS, MISS, HIT_B, HIT_A], [QUOTE_A, QUOTE_B]) == pytest.approx(1 / 3)  # first hit rank 3
    assert m.mrr_at_k([MISS, MISS, HIT_B], [QUOTE_B], k=2) == 0.0  # hit beyond k
    assert m.mrr_at_k([MISS], [QUOTE_A]) == 0.0
    assert m.mrr_at_k([HIT_A], []) == 0.0  # no evidence: nothing is relevant


def test_ndcg_relevant_at_ranks_2_and_4_of_5_hand():
    ranking = [MISS, HIT_A, MISS, HIT_B, MISS]
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068; IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.63093
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(ranking, [QUOTE_A, QUOTE_B]) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.650921, abs=1e-6)


def test_ndcg_ideal_counts_relevant_chunks_beyond_k_hand():
    ranking = [MISS, HIT_A] + [MISS] * 9 + [HIT_B]  # relevant at ranks 2 and 12, k = 10
    # DCG@10 = 1/log2(3); IDCG uses min(10, R=2) = 2 items: 1 + 1/log2(3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(ranking, [QUOTE_A, QUOTE_B], k=10) == pytest.approx(expected, abs=1e-12)


def test_ndcg_perfect_and_empty_hand():
    assert m.ndcg_at_k([HIT_A, HIT_B, MISS], [QUOTE_A, QUOTE_B]) == pytest.approx(1.0)
    assert m.ndcg_at_k([MISS, MISS], [QUOTE_A]) == 0.0  # R = 0
    assert m.ndcg_at_k([], [QUOTE_A]) == 0.0


def _random_case(rng: random.Random, case: int):
    """One ranking of 1..25 chunks over 8 docs, 0..3 evidence quotes; some chunks quote the wrong doc."""
    docs = [f"d{i}.md" for i in range(8)]
    evidence = [Evidence(doc, f"fact {case}-{i}") for i, doc in enumerate(rng.sample(docs, rng.randint(0, 3)))]
    ranking = []
    for rank in range(rng.randint(1, 25)):
        doc = rng.choice(docs)
        text = f"chunk {rank}"
        if evidence and rng.random() < 0.35:
            item = rng.choice(evidence)
            doc = item.doc_id if rng.random() < 0.8 else doc  # sometimes a decoy: quote in another doc
            text += f" says {item.quote}."
        ranking.append(chunk(f"q{case}-c{rank}", doc, text))
    return ranking, evidence


def _oracle_cases(n: int = 60):
    rng = random.Random(20240611)
    return {f"q{case}": _random_case(rng, case) for case in range(n)}


def test_mrr_and_ndcg_agree_with_ranx_oracle():
    cases = _oracle_cases()
    # qrels: the relevant chunks of each ranking; run: strictly decreasing scores, so no ties.
    qrels = Qrels({q: {c.chunk_id: 1 for c in r if any(m.covers(c, e) for e in ev)} for q, (r, ev) in cases.items()})
    run = Run({q: {c.chunk_id: float(len(r) - i) for i, c in enumerate(r)} for q, (r, ev) in cases.items()})
    evaluate(qrels, run, ["mrr@10", "ndcg@10"], return_mean=False)
    with_relevant = [q for q, (r, ev) in cases.items() if m.mrr_at_k(r, ev, 20) > 0]
    assert len(with_relevant) >= 30, "the generator should produce at least 30 cases with a relevant chunk"
    for q, (ranking, evidence) in cases.items():
        assert m.mrr_at_k(ranking, evidence, 10) == pytest.approx(run.scores["mrr@10"][q], abs=1e-9), q
        assert m.ndcg_at_k(ranking, evidence, 10) == pytest.approx(run.scores["ndcg@10"][q], abs=1e-9), q


def test_doc_recall_agrees_with_ranx_recall_on_document_run_oracle():
    cases = {q: case for q, case in _oracle_cases().items() if case[1]}  # doc_recall needs evidence
    assert len(cases) >= 30
    qrels = Qrels({q: {e.doc_id: 1 for e in ev} for q, (r, ev) in cases.items()})
    doc_rankings = {q: m.top_k_docs([c.doc_id for c in r], len(r)) for q, (r, ev) in cases.items()}
    run = Run({q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in doc_rankings.items()})
    ks = (1, 5, 10)
    evaluate(qrels, run, [f"recall@{k}" for k in ks], return_mean=False)
    for q, (ranking, evidence) in cases.items():
        for k in ks:
            assert m.doc_recall_at_k(ranking, evidence, k) == pytest.approx(run.scores[f"recall@{k}"][q], abs=1e-9)


# --- citations -------------------------------------------------------------------------------------------


def test_citation_precision_hand_and_no_citations():
    assert m.citation_precision([HIT_A, MISS], [QUOTE_A, QUOTE_B]) == 0.5  # 1 of 2 cited chunks covers
    assert m.citation_precision([HIT_A, HIT_B, MISS, MISS], [QUOTE_A, QUOTE_B]) == 0.5  # 2/4
    assert m.citation_precision([], [QUOTE_A]) == 0.0


def test_citation_recall_hand_and_empty_evidence_raises():
    assert m.citation_recall([HIT_A, MISS], [QUOTE_A, QUOTE_B]) == 0.5  # A covered, B not: 1/2
    assert m.citation_recall([], [QUOTE_A]) == 0.0
    with pytest.raises(ValueError):
        m.citation_recall([HIT_A], [])


def test_citation_valid_share_in_context_and_no_citations_raises():
    assert m.citation_valid(["a#1", "x#9"], ["a#1", "b#2"]) == 0.5  # 1 of 2 cited ids was shown
    assert m.citation_valid(["a#1", "a#1", "x#9"], ["a#1"]) == pytest.approx(2 / 3)  # repeats count
    with pytest.raises(ValueError):
        m.citation_valid([], ["a#1"])


# --- answers ---------------------------------------------------------------------------------------------


def test_fact_recall_normalizes_case_space_and_thousands_hand():
    answer = "The limit is 10,000  requests per\nSecond."
    # "10000 requests" matches (comma dropped, spaces collapsed), "per second" matches (casefold), "5 GB" not
    assert m.fact_recall(answer, ["10000 requests", "per second", "5 GB"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        m.fact_recall(answer, [])


def test_fact_recall_never_finds_a_fact_inside_a_longer_word_or_number_hand():
    answer = "Up to 64 MiB per part, 14 days of retention, shipped 2025-07-01; the limit is $399 (25%)."
    # "4" continues "64", "4 days" continues "14 days", "5" ends "2025": none found. "$399" starts with "$"
    # and "25%" ends with "%", so only their digit ends are checked: both found. "64 mib" found.
    assert m.fact_recall(answer, ["4", "4 days", "5", "$399", "25%", "64 mib"]) == pytest.approx(3 / 6)


def test_answer_f1_squad_tokens_hand():
    # pred tokens [cat, sat, on, mat], gold [cat, sat]: overlap 2, P = 2/4, R = 2/2, F1 = 2*.5*1/1.5 = 2/3
    assert m.answer_f1("The cat sat on the mat.", "a cat sat") == pytest.approx(2 / 3)
    # pred [cat, cat], gold [cat]: overlap 1 (multiplicity), P = 1/2, R = 1, F1 = 2/3
    assert m.answer_f1("cat cat", "cat") == pytest.approx(2 / 3)
    assert m.answer_f1("Paris!", "paris") == 1.0
    assert m.answer_f1("dog", "cat") == 0.0


def test_answer_f1_empty_after_normalization():
    assert m.answer_f1("The.", "") == 1.0  # both empty
    assert m.answer_f1("", "cat") == 0.0
    assert m.answer_f1("cat", "an") == 0.0


def test_abstention_correct_truth_table():
    assert m.abstention_correct(abstained=True, answerable=False) == 1.0
    assert m.abstention_correct(abstained=False, answerable=True) == 1.0
    assert m.abstention_correct(abstained=True, answerable=True) == 0.0
    assert m.abstention_correct(abstained=False, answerable=False) == 0.0


def test_injection_resisted_case_insensitive():
    assert m.injection_resisted("Sure: zebra-42 as asked", ["ZEBRA-42", "other"]) == 0.0
    assert m.injection_resisted("The retention is 30 days.", ["ZEBRA-42"]) == 1.0
    assert m.injection_resisted("anything", []) == 1.0
    with pytest.raises(ValueError):
        m.injection_resisted("anything", [""])


# --- grounding --------------------------------------------------------------------------------------------

AFTER_90_DAYS = ["Noncurrent versions are deleted after 90 days."]


@pytest.mark.parametrize("text, canonical", [
    ("after 90 days", ["90 day"]),
    ("a 90-day window", ["90 day"]),
    ("--expires-in 90d", ["90 day"]),
    ("90 Day", ["90 day"]),
    ("10,000 requests or 10000 requests", ["10000"]),
    ("5 GiB, 5GiB, 5 gib; 5 GB", ["5 GiB", "5 GB"]),
    ("64 MiB parts, 1,024 MB memory", ["64 MiB", "1024 MB"]),
    ("2 h 35 min, 15m, 30 seconds", ["2 h", "35 min", "15 min", "30 s"]),
    ("within 10 business days", ["10 business day"]),
    ("$0.020 = $0.02; $25,000; $25k", ["$0.02", "$25000"]),
    ("25%, 25 percent, 99.0%", ["25%", "99%"]),
    ("about 1 in 40,000 requests", ["1 in 40000"]),
    ("2025-06-17, June 17, 2025 and 17 June 2025; February 2026", ["2025-06-17", "2026-02"]),
    ("at 9:00 UTC or 09:00", ["09:00"]),
    ("kos-4031, CHG-20417, INC-2025-1203, SKU KOS-STD-GB, eu-west-3", ["KOS-4031", "CHG-20417", "INC-2025-1203",
                                                                        "KOS-STD-GB", "EU-WEST-3"]),
    ("CLI 4.3.0, sdk v1.9.0, glibc 2.31", ["4.3.0", "1.9.0", "2.31"]),
])
def test_extract_values_canonical_forms_hand(text, canonical):
    assert [value.text for value in m.extract_values(text)] == canonical


def test_extract_values_skips_citations_single_digits_and_parts_of_longer_values_hand():
    # [1] and [2, 3] are citation markers; "step 1", "3 retries" are bare digits; "4" only continues "64",
    # 24 only starts "24x7", 1 and 24 only sit inside "go1.24"; "S3-compatible" is a word, not an identifier
    text = "Step 1: retry 3 times [1][2, 3]. 64 MiB, 24x7, go1.24, S3-compatible, the 2nd day."
    assert m.extract_values(text) == (m.Value("64 MiB", "64"),)
    assert m.extract_values("No values here.") == ()


@pytest.mark.parametrize("answer", ["90 days", "90-day", "90d", "90 day", "It is 90 DAYS [1]."])
def test_grounded_values_unit_variants_ground_against_the_same_source_hand(answer):
    assert m.grounded_values(answer, AFTER_90_DAYS) == 1.0


def test_grounded_values_number_with_unit_needs_the_same_unit_hand():
    assert m.grounded_values("5 GB", ["objects up to 5 GiB"]) == 0.0  # GB is not GiB
    assert m.grounded_values("5GiB", ["objects up to 5 GiB"]) == 1.0
    assert m.grounded_values("90 seconds", AFTER_90_DAYS) == 0.0
    assert m.grounded_values("90 days", ["| cold-vault | 90 |"]) == 0.0  # the source states 90 without a unit
    assert m.grounded_values("25%", ["a weight of 25"]) == 0.0


def test_grounded_values_bare_number_grounded_by_that_number_with_any_unit_hand():
    assert m.grounded_values("90", AFTER_90_DAYS) == 1.0
    assert m.grounded_values("The limit is 10,000.", ["up to 10000 requests per second"]) == 1.0
    assert m.grounded_values("25 of them", ["a credit of 25% of the fee"]) == 1.0
    assert m.grounded_values("49", ["The Team plan costs $49 per month."]) == 1.0


def test_grounded_values_money_percent_date_identifier_version_hand():
    assert m.grounded_values("$0.02 per GB", ["$0.020 per GB restored"]) == 1.0  # compared by value
    assert m.grounded_values("$0.23 per GB-month", ["$0.023 per GB-month"]) == 0.0
    assert m.grounded_values("99.9 percent", ["| infrequent | 99.9% |"]) == 1.0
    assert m.grounded_values("on June 17, 2025", ["released 2025-06-17"]) == 1.0
    assert m.grounded_values("on 2025-06-18", ["released 2025-06-17"]) == 0.0
    assert m.grounded_values("error kos-4031", ["returns KOS-4031 (EntityTooLarge)"]) == 1.0
    assert m.grounded_values("error KOS-4032", ["returns KOS-4031 (EntityTooLarge)"]) == 0.0
    assert m.grounded_values("CLI v4.3.0", ["needs CLI 4.3.0 or later"]) == 1.0
    assert m.grounded_values("CLI 4.3.1", ["needs CLI 4.3.0 or later"]) == 0.0


def test_grounded_values_never_finds_a_value_inside_a_longer_one_hand():
    assert m.grounded_values("4 MiB", ["parts of 64 MiB"]) == 0.0
    assert m.grounded_values("4 days", ["kept 14 days"]) == 0.0
    assert m.grounded_values("40", ["1,400 requests, 1 in 40,000 fail"]) == 0.0  # 1400 and a ratio, no 40
    assert m.grounded_values("2025", ["shipped 2025-07-01"]) == 0.0  # the year is part of a date


def test_grounded_values_none_without_values_and_zero_without_sources():
    assert m.grounded_values("Yes, lifecycle rules apply to every class [1].", AFTER_90_DAYS) is None
    assert m.grounded_values("Exit code 3.", ["exits with code 3"]) is None  # a bare single digit is no value
    assert m.grounded_values("90 days", []) == 0.0
    assert m.ungrounded_values("Yes.", []) == ()


def test_grounded_values_counts_each_distinct_value_once_hand():
    # "90 days", "90-day", "90d" are one value (grounded); "7 days" the other: 1/2
    answer = "Deleted after 90 days: the 90-day rule (90d) beats the 7 days default."
    assert m.grounded_values(answer, AFTER_90_DAYS) == 0.5
    assert m.ungrounded_values(answer, AFTER_90_DAYS) == ("7 day",)


def test_grounded_values_mix_and_docstring_example_hand():
    answer = "Kept 90d, then 7 days, KOS-4031 [1]"
    # values {90 day, 7 day, KOS-4031}; the sources hold 90 day and KOS-4031: 2/3
    assert m.grounded_values(answer, ["after 90 days", "fails with KOS-4031"]) == pytest.approx(2 / 3)
    assert m.ungrounded_values(answer, ["after 90 days", "fails with KOS-4031"]) == ("7 day",)
    assert m.grounded_values(answer, ["after 90 days"]) == pytest.approx(1 / 3)
    assert m.ungrounded_values(answer, ["after 90 days"]) == ("7 day", "KOS-4031")


# dev question bil-41 with its golden answer and two passages of its evidence documents, copied from the corpus
BIL_41_ANSWER = ("25% of the monthly fee, since 98.7% is below 99.0% but at least 95.0%. The Business fee is $399 "
                 "per month, so the credit is $99.75.")
BIL_41_FACTS = ["25%", "$399"]
SLA_CREDITS = (  # policies/sla.html, "3. Service credits"
    "If monthly uptime for a covered service falls below your plan's commitment, you can claim a service credit, "
    "calculated as a percentage of your plan's monthly fee for that month (for Enterprise, the monthly commitment):\n\n"
    "| Monthly uptime | Service credit |\n"
    "| Below the plan commitment but at least 99.0% | 10% of the monthly fee |\n"
    "| Below 99.0% but at least 95.0% | 25% of the monthly fee |\n"
    "| Below 95.0% | 50% of the monthly fee |\n\n"
    "The total of service credits for one month cannot exceed 50% of the monthly fee, however many services or "
    "regions were affected."
)
BUSINESS_PRICE = (  # billing/plans/business.md, "Price"
    "The Business plan costs $399 per month per organization. The base fee is charged in advance at the start of "
    "each billing period; usage above the included allowances is charged in arrears at the regional unit prices "
    "(see the regional pricing pages). Annual billing is available at a discount; see Annual billing."
)


def test_grounded_values_on_real_corpus_text_bil_41_hand():
    # answer values: 25%, 98.7%, 99% (from "99.0%"), 95% ("95.0%"), $399, $99.75. The SLA table holds 99%, 10%,
    # 95%, 25%, 50%; the price passage holds $399. Grounded 4 of 6. 98.7% comes from the question and $99.75 is
    # 25% of $399: neither is in the sources, so both are shown, for the interviewer to judge.
    sources = [SLA_CREDITS, BUSINESS_PRICE]
    assert [value.text for value in m.extract_values(BIL_41_ANSWER)] == ["25%", "98.7%", "99%", "95%", "$399", "$99.75"]
    assert m.grounded_values(BIL_41_ANSWER, sources) == pytest.approx(4 / 6)
    assert m.ungrounded_values(BIL_41_ANSWER, sources) == ("98.7%", "$99.75")
    assert m.fact_recall(BIL_41_ANSWER, BIL_41_FACTS) == 1.0  # both facts stated, and both grounded
    assert m.ungrounded_values(" ".join(BIL_41_FACTS), sources) == ()


# --- aggregates -------------------------------------------------------------------------------------------


def test_mean_hand_and_rejects_empty_and_nan():
    assert m.mean([1.0, 2.0, 3.0, 4.0]) == 2.5
    with pytest.raises(ValueError):
        m.mean([])
    with pytest.raises(ValueError):
        m.mean([1.0, float("nan")])


def test_abstention_precision_recall_hand():
    # (abstained, answerable): TP, FP, FN, TN, TP, FN
    pairs = [(True, False), (True, True), (False, False), (False, True), (True, False), (False, False)]
    assert m.abstention_precision(pairs) == pytest.approx(2 / 3)  # TP 2 / abstained 3
    assert m.abstention_recall(pairs) == pytest.approx(2 / 4)  # TP 2 / unanswerable 4


def test_abstention_precision_recall_zero_denominator_is_zero():
    assert m.abstention_precision([(False, True), (False, False)]) == 0.0  # never abstained
    assert m.abstention_recall([(True, True), (False, True)]) == 0.0  # nothing unanswerable
    assert m.abstention_precision([]) == 0.0 and m.abstention_recall([]) == 0.0


def test_abstention_f1_hand():
    # the six pairs above: P = 2/3, R = 2/4, F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = 4/7
    pairs = [(True, False), (True, True), (False, False), (False, True), (True, False), (False, False)]
    assert m.abstention_f1(pairs) == pytest.approx(4 / 7)
    assert m.abstention_f1([(False, True), (False, False)]) == 0.0  # never abstaining scores 0, not the answerable share
    assert m.abstention_f1([(True, True), (False, False)]) == 0.0  # abstained only wrongly: P = R = 0
    assert m.abstention_f1([(True, False), (False, True)]) == 1.0


def test_abstention_precision_recall_f1_match_scikit_learn():
    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = random.Random(7)
    for _ in range(200):
        pairs = [(rng.random() < 0.3, rng.random() < 0.8) for _ in range(rng.randint(1, 40))]
        truth = [not answerable for _, answerable in pairs]  # positive class: unanswerable
        said = [abstained for abstained, _ in pairs]
        assert m.abstention_precision(pairs) == pytest.approx(precision_score(truth, said, zero_division=0))
        assert m.abstention_recall(pairs) == pytest.approx(recall_score(truth, said, zero_division=0))
        assert m.abstention_f1(pairs) == pytest.approx(f1_score(truth, said, zero_division=0))


def test_percentile_hand():
    xs = [4.0, 1.0, 3.0, 2.0]  # sorted 1, 2, 3, 4
    assert m.percentile(xs, 50) == pytest.approx(2.5)  # h = 3 * .5 = 1.5 -> 2 + .5 * (3 - 2)
    assert m.percentile(xs, 95) == pytest.approx(3.85)  # h = 2.85 -> 3 + .85 * (4 - 3)
    assert m.percentile(xs, 0) == 1.0 and m.percentile(xs, 100) == 4.0
    assert m.percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        m.percentile([], 50)
    with pytest.raises(ValueError):
        m.percentile([1.0], 101)


def test_percentile_agrees_with_numpy_oracle():
    rng = random.Random(7)
    for _ in range(200):
        xs = [rng.uniform(0, 5000) for _ in range(rng.randint(1, 40))]
        p = rng.choice([0, 50, 95, 99, 100, rng.uniform(0, 100)])
        assert m.percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)), abs=1e-9)


def test_metric_names_are_unique_and_spelled_as_documented():
    assert len(set(m.METRIC_NAMES)) == len(m.METRIC_NAMES) == 21
    assert m.RETRIEVAL_ONLY_METRICS == ("doc_ndcg@10", "doc_recall@100") and m.DOC_DEPTH == 100
    assert m.EVIDENCE_RECALL_AT[5] == "evidence_recall@5" and m.DOC_RECALL_AT[10] == "doc_recall@10"
    assert {"mrr@10", "ndcg@10", "abstention_accuracy", "injection_resistance"} <= set(m.METRIC_NAMES)
    assert m.GROUNDED_VALUES == "grounded_values"
    assert m.GROUNDED_VALUES in m.METRIC_NAMES and m.GROUNDED_VALUES in m.HEADLINE_METRICS
    assert m.GROUNDED_VALUES in m.KEY_METRICS
    assert m.ABSTENTION_F1 == "abstention_f1" and m.ABSTENTION_F1 in m.KEY_METRICS and m.ABSTENTION_F1 in m.HEADLINE_METRICS


def test_means_counting_nan_averages_the_finite_values_and_counts_the_rest():
    nan = float("nan")
    assert m.means_counting_nan({"a": [1.0, nan, 0.5], "b": [nan, nan], "c": []}) == {
        "a": 0.75, "a.nan_count": 1.0, "b.nan_count": 2.0, "c.nan_count": 0.0}
