"""ragas 0.4.3 as an oracle: where its no-LLM metrics coincide with ragkata's, they agree to 1e-9.

Also shows the documented differences (case, stemming) and that ragas_columns counts NaNs and sends
nothing over the network. See harness/ragas_columns.py for the list of correspondences.
"""

from __future__ import annotations

import random

import pytest

from harness.ragas_columns import ragas_columns, ragas_scores  # sets RAGAS_DO_NOT_TRACK before ragas loads

import ragas._analytics as analytics  # noqa: E402  (after ragas_columns, on purpose)
from exercise.contracts import Chunk  # noqa: E402
from harness import metrics as m  # noqa: E402
from harness.golden import Evidence, GoldenQuestion  # noqa: E402
from harness.records import RankedHit, Sample  # noqa: E402


def golden(id: str, evidence_docs: list[str], answer: str = "5 gb", facts: tuple[str, ...] = ("5 gb",),
           answerable: bool = True) -> GoldenQuestion:
    evidence = tuple(Evidence(doc, f"quote from {doc}") for doc in evidence_docs)
    return GoldenQuestion(id, "?", answerable, answer, facts, evidence, ())


def run_sample(id: str, ranking_docs: list[str], answer: str = "", error: str | None = None) -> Sample:
    retrieved = tuple(RankedHit(i + 1, Chunk(f"{doc}#{i}", doc, "", 0, 0), float(len(ranking_docs) - i))
                      for i, doc in enumerate(ranking_docs))
    return Sample(id, "?", (), True, retrieved, (), answer, (), False, {}, error, {}, "ok")


def as_chunks(sample: Sample) -> list[Chunk]:
    return list(sample.top)


# A hand-built run. Document ranks in comments; evidence docs in brackets.
GOLDEN = {
    "g1": golden("g1", ["a", "b"]),  # docs a, c, b, d, e, f -> doc_recall@1 = 1/2, @5 = 2/2
    "g2": golden("g2", ["c"]),  # docs x, y, z, w, v, c -> @1 = 0, @5 = 0 (c is doc rank 6)
    "g3": golden("g3", ["a", "b", "c"]),  # docs b, q -> @1 = 1/3, @5 = 1/3
    "g4": golden("g4", [], answerable=False, facts=(), answer=""),  # unanswerable: not scored by ragas
}
RUN = [
    run_sample("g1", ["a", "a", "c", "b", "d", "e", "f"], "it is 5 gb"),
    run_sample("g2", ["x", "y", "z", "w", "v", "c"], "no idea"),
    run_sample("g3", ["b", "b", "q", "b"], "5 GB"),
    run_sample("g4", ["a"], "I cannot tell."),
]


@pytest.mark.parametrize("k", [1, 5, 10])
def test_ragas_id_context_recall_equals_doc_recall_per_question(k):
    expected = {"g1": {1: 0.5, 5: 1.0, 10: 1.0}, "g2": {1: 0.0, 5: 0.0, 10: 1.0}, "g3": {1: 1 / 3, 5: 1 / 3, 10: 1 / 3}}
    for sample in RUN[:3]:
        ours = m.doc_recall_at_k(as_chunks(sample), GOLDEN[sample.id].evidence, k)
        theirs = ragas_scores(sample, GOLDEN[sample.id], k)[f"ragas_id_context_recall@{k}"]
        assert ours == pytest.approx(expected[sample.id][k], abs=1e-12)
        assert theirs == pytest.approx(ours, abs=1e-9), sample.id


def test_ragas_id_context_recall_equals_doc_recall_on_random_runs():
    rng = random.Random(99)
    docs = [f"d{i}" for i in range(10)]
    for case in range(40):
        sample = run_sample(f"r{case}", [rng.choice(docs) for _ in range(rng.randint(1, 25))])
        gold = golden(f"r{case}", rng.sample(docs, rng.randint(1, 4)))
        for k in (1, 5, 10):
            ours = m.doc_recall_at_k(as_chunks(sample)[:20], gold.evidence, k)
            assert ragas_scores(sample, gold, k)[f"ragas_id_context_recall@{k}"] == pytest.approx(ours, abs=1e-9)


def test_ragas_columns_run_means_match_hand_values():
    columns = ragas_columns(RUN, GOLDEN, k=5)
    # doc_recall@5 over g1, g2, g3 = (1 + 0 + 1/3) / 3; g4 is unanswerable and skipped.
    assert columns["ragas_id_context_recall@5"] == pytest.approx((1 + 0 + 1 / 3) / 3, abs=1e-9)
    # evidence docs among the top-5 docs: g1 2/5 (a, b of a c b d e), g2 0/5, g3 1/2 (b of b q)
    assert columns["ragas_id_context_precision@5"] == pytest.approx((2 / 5 + 0 + 1 / 2) / 3, abs=1e-9)
    # StringPresence of "5 gb": g1 yes, g2 no, g3 no ("5 GB" differs in case)
    assert columns["ragas_string_presence"] == pytest.approx(1 / 3, abs=1e-9)
    assert columns["ragas_exact_match"] == 0.0
    assert all(columns[f"{name}.nan_count"] == 0.0 for name in ("ragas_rouge1", "ragas_id_context_recall@5"))


def test_string_presence_equals_fact_recall_when_already_normalized():
    cases = [("the limit is 5 gb per object", ("5 gb",)), ("retention is 30 days", ("30 days", "90 days")),
             ("no answer here", ("5 gb",)), ("queues keep 14 days and 256 kb", ("14 days", "256 kb"))]
    for answer, facts in cases:
        gold = golden("g", ["a"], facts=facts)
        theirs = ragas_scores(run_sample("g", ["a"], answer), gold)["ragas_string_presence"]
        assert theirs == pytest.approx(m.fact_recall(answer, facts), abs=1e-9), answer


def test_string_presence_differs_from_fact_recall_on_case_and_separators():
    answer = "The limit is 10,000 requests, up to 5 GB."
    facts = ("10000 requests", "5 gb")
    gold = golden("g", ["a"], facts=facts)
    assert m.fact_recall(answer, facts) == 1.0  # normalize_for_match: casefold, drop thousands separators
    assert ragas_scores(run_sample("g", ["a"], answer), gold)["ragas_string_presence"] == 0.0  # raw substring


def test_string_presence_differs_from_fact_recall_on_a_fact_inside_a_longer_number():
    answer = "Use parts of 64 MiB; the change shipped on 2025-07-01."
    facts = ("4", "5")
    gold = golden("g", ["a"], facts=facts)
    assert m.fact_recall(answer, facts) == 0.0  # "4" only continues "64", "5" only ends "2025"
    assert ragas_scores(run_sample("g", ["a"], answer), gold)["ragas_string_presence"] == 1.0  # raw substring


def test_rouge1_equals_answer_f1_on_plain_lowercase_words():
    # lowercase ASCII words and digits, no punctuation or articles, no two words sharing a Porter stem
    pairs = [("max object size 5 gb", "object size limit 5 gb"), ("retention 30 days", "30 days"),
             ("queue holds messages 14 days", "messages expire after 14 days"), ("blue", "green")]
    for answer, reference in pairs:
        theirs = ragas_scores(run_sample("g", ["a"], answer), golden("g", ["a"], answer=reference))["ragas_rouge1"]
        assert theirs == pytest.approx(m.answer_f1(answer, reference), abs=1e-9), (answer, reference)


def test_rouge1_differs_from_answer_f1_on_articles_and_stems():
    # SQuAD drops "the" and keeps "limits" != "limit"; ROUGE keeps "the" and stems limits -> limit.
    scores = ragas_scores(run_sample("g", ["a"], "the limits"), golden("g", ["a"], answer="limit"))
    assert m.answer_f1("the limits", "limit") == 0.0
    assert scores["ragas_rouge1"] == pytest.approx(2 / 3)  # tokens [the, limit] vs [limit]: P 1/2, R 1


def test_ragas_columns_counts_nan_instead_of_averaging():
    gold = {"n1": golden("n1", []), "n2": golden("n2", ["a"])}  # n1 has no evidence: recall is NaN in ragas
    run = [run_sample("n1", ["a"]), run_sample("n2", [])]  # n2 retrieved nothing: precision is NaN
    columns = ragas_columns(run, gold, k=5)
    assert columns["ragas_id_context_recall@5.nan_count"] == 1.0
    assert columns["ragas_id_context_recall@5"] == 0.0  # n2 only: a not retrieved
    assert columns["ragas_id_context_precision@5.nan_count"] == 1.0
    assert columns["ragas_id_context_precision@5"] == 0.0  # n1 only: a retrieved, not evidence


def test_ragas_columns_skips_errors_and_unanswerable_and_rejects_unknown_ids():
    run = [run_sample("g1", ["b"], error="TimeoutError"), RUN[3]]
    assert ragas_columns(run, GOLDEN) == {}
    with pytest.raises(ValueError, match="nope"):
        ragas_columns([run_sample("nope", ["a"])], GOLDEN)


def test_ragas_columns_sends_no_usage_events(monkeypatch):
    posts = []
    monkeypatch.setattr(analytics.requests, "post", lambda *args, **kwargs: posts.append(args))
    ragas_columns(RUN, GOLDEN)
    analytics._analytics_batcher.flush()
    assert analytics.do_not_track() is True
    assert posts == []
