"""The headline's holdout-gap flags: grader/gaps.py's paired bootstrap on tiny cases worked out by hand, the
headline's rule (interval above zero, at least 20 holdout questions), and three candidates run for real.

The tiny cases build Samples by hand. The real ones run pipelines through harness.runner.start_run on
golden_set/dev.jsonl and holdout.jsonl, once for the module: the starter with BM25 (dense retrieval is
not the point here), the reference as it ships, and three candidates: one that answers dev questions
from the golden file and is the starter on holdout, one identical to the starter, and one with honest
task 1 and 2 work (the reference's chunks and hybrid retrieval, the starter's generator); each pipeline
is built once and answers dev and holdout in one run. Slow: the reference and the honest candidate
embed the corpus on a cold cache (over 20 minutes on two cores); with a warm one the module took 105-130 s
on two busy cores (about 100 s of CPU), half of it the reference. Skipped where the holdout or grader/solutions is absent.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import random
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from exercise.config import Config
from exercise.contracts import Answer, Document, Hit, IndexStats
from grader import rubric
from grader.gaps import MIN_HOLDOUT_N, gap_interval
from grader.render_html import judge
from grader.scorecard import (
    SIDES,
    SPLITS,
    alike,
    build_note,
    failures,
    headline,
    never_abstain,
)
from harness import metrics as m
from harness.golden import Evidence, GoldenQuestion, read_golden
from harness.records import Sample
from harness.runner import RUNS_DIR_ENV, start_run
from harness.scoring import summarize

ROOT = Path(__file__).resolve().parents[1]
DEV, HOLDOUT, CORPUS = ROOT / "golden_set" / "dev.jsonl", ROOT / "golden_set" / "holdout.jsonl", ROOT / "corpus"


# --- tiny cases, by hand -----------------------------------------------------------------------------


def sample(qid: str, scores: dict[str, float] | None = None, answerable: bool = True, abstained: bool = False,
           error: str | None = None, tags: Sequence[str] = (), failure: str = "ok") -> Sample:
    return Sample(qid, f"question {qid}?", tuple(tags), answerable, (), (), "", (), abstained, {"total": 1.0}, error,
                  scores=dict(scores or {}), failure=failure)


def scored(values: Sequence[float | None], split: str, metric: str = m.FACT_RECALL) -> list[Sample]:
    """One sample per value, ids "<split>-0", "<split>-1", ...; None: the metric does not apply to it."""
    return [sample(f"{split}-{i}", {} if v is None else {metric: v}) for i, v in enumerate(values)]


def side(dev: Sequence[float | None], holdout: Sequence[float | None], metric: str = m.FACT_RECALL) -> dict:
    return {"dev": scored(dev, "dev", metric), "holdout": scored(holdout, "holdout", metric)}


def test_identical_sides_give_a_zero_width_interval():
    rng = random.Random(1)
    both = side([rng.random() for _ in range(30)], [rng.random() for _ in range(25)])
    result = gap_interval(both, both, m.FACT_RECALL)
    assert (result.gap, result.low, result.high) == (0.0, 0.0, 0.0)


def test_the_same_drawn_questions_go_to_both_sides():
    # candidate = reference + 0.1 on every question of both splits: D = 0.1 - 0.1 = 0 on every paired draw;
    # drawing each side's questions apart would put the reference's spread into D and widen the interval.
    rng = random.Random(2)
    dev, holdout = [rng.choice([0.0, 0.3, 0.9]) for _ in range(30)], [rng.choice([0.0, 0.5, 0.9]) for _ in range(25)]
    result = gap_interval(side([v + 0.1 for v in dev], [v + 0.1 for v in holdout]), side(dev, holdout), m.FACT_RECALL)
    assert result.gap == pytest.approx(0.0, abs=1e-12)
    assert result.low == pytest.approx(0.0, abs=1e-12) and result.high == pytest.approx(0.0, abs=1e-12)


def test_two_dev_questions_worked_by_hand():
    # Reference 0.5 everywhere: its gap is 0 on every draw. Candidate holdout 0 everywhere, dev [1, 0].
    # D = (0.5 - 0) - 0 = 0.5. A draw of the two dev ids holds two 1s, one, or none with probability
    # 1/4, 1/2, 1/4, so D* is 1, 0.5 or 0; over 2,000 draws the 2.5th percentile is 0 and the 97.5th is 1.
    result = gap_interval(side([1.0, 0.0], [0.0] * 25), side([0.5, 0.5], [0.5] * 25), m.FACT_RECALL)
    assert (result.gap, result.low, result.high) == (0.5, 0.0, 1.0)
    # a gap of 0.5 that two questions cannot tell from noise: not flagged (the old rule, gap > 0.05, flagged it)
    row = row_of(headline(*three(side([1.0, 0.0], [0.0] * 25), side([0.5, 0.5], [0.5] * 25))), m.FACT_RECALL)
    assert (row["flagged"], row["interval"], row["gap"]["candidate"]) == (False, [0.0, 1.0], 0.5)


def test_a_per_question_metric_is_the_mean_of_the_questions_that_have_it():
    # citation_valid applies to the first two dev questions only: the candidate's dev value is 1.0 on every
    # draw that holds one of them, never diluted by the questions without it. Holdout and reference: 0.
    result = gap_interval(side([1.0, 1.0, None, None], [0.0] * 25, m.CITATION_VALID),
                          side([0.0, 0.0, None, None], [0.0] * 25, m.CITATION_VALID), m.CITATION_VALID)
    assert (result.gap, result.low, result.high) == (1.0, 1.0, 1.0)
    assert result.draws < 2000  # draws of only the last two dev questions (1 in 16) leave the value undefined


def abstaining(dev: Sequence[tuple[bool, bool]], holdout: Sequence[tuple[bool, bool]]) -> dict:
    """A side from (answerable, abstained) pairs; every question scored on abstention_accuracy."""
    return {split: [sample(f"{split}-{i}", {m.ABSTENTION_ACCURACY: float(a == (not ok))}, answerable=ok, abstained=a)
                    for i, (ok, a) in enumerate(pairs)]
            for split, pairs in (("dev", dev), ("holdout", holdout))}


def test_abstention_f1_is_recomputed_over_each_draw_not_averaged_per_question():
    # Half of each split unanswerable. The reference abstains exactly on those: F1 = 1 on both splits. The
    # candidate does too on dev, never on holdout: F1 1 and 0. D = (1 - 0) - (1 - 1) = 1 on every draw that
    # holds an unanswerable question of each split (all but about 2 x 0.5^30 of them). abstention_accuracy
    # would give the never-abstaining holdout 0.5, and D = 0.5.
    perfect = [(i % 2 == 0, i % 2 == 1) for i in range(30)]
    never = [(i % 2 == 0, False) for i in range(30)]
    result = gap_interval(abstaining(perfect, never), abstaining(perfect, perfect), m.ABSTENTION_F1)
    assert (result.gap, result.low, result.high) == (1.0, 1.0, 1.0)
    accuracy = gap_interval(abstaining(perfect, never), abstaining(perfect, perfect), m.ABSTENTION_ACCURACY)
    assert accuracy.gap == 0.5


def random_side(rng: random.Random, dev: int, holdout: int) -> dict:
    """Samples with every kind of score: some metrics missing, errors, abstentions, unanswerable questions."""
    def one(qid: str) -> Sample:
        answerable, error = rng.random() < 0.8, "TimeoutError" if rng.random() < 0.05 else None
        abstained = error is None and rng.random() < (0.2 if answerable else 0.7)
        scores = {name: float(rng.random() < 0.6) for name in m.KEY_METRICS
                  if name not in (m.ABSTENTION_PRECISION, m.ABSTENTION_RECALL, m.ABSTENTION_F1) and rng.random() < 0.7}
        scores[m.ABSTENTION_ACCURACY] = float(abstained == (not answerable))
        return sample(qid, scores, answerable, abstained, error)
    return {"dev": [one(f"d{i}") for i in range(dev)], "holdout": [one(f"h{i}") for i in range(holdout)]}


@pytest.mark.parametrize("name", m.KEY_METRICS)
def test_the_observed_gap_is_the_one_the_summaries_give(name):
    rng = random.Random(3)
    cand, ref = random_side(rng, 60, 40), random_side(rng, 60, 40)
    value = {(who, split): summarize(s[split]).metrics[name] for who, s in (("c", cand), ("r", ref)) for split in SPLITS}
    expected = (value["c", "dev"] - value["c", "holdout"]) - (value["r", "dev"] - value["r", "holdout"])
    result = gap_interval(cand, ref, name)
    assert result.gap == pytest.approx(expected, abs=1e-12)
    assert result.low <= result.high and result == gap_interval(cand, ref, name)  # a fixed seed: the same draws


def three(candidate: dict, reference: dict, starter: dict | None = None) -> tuple[dict, dict]:
    """(summaries, samples) of three sides, as grade.py builds them."""
    samples = {"starter": starter or reference, "candidate": candidate, "reference": reference}
    summaries = {who: {split: summarize(samples[who][split]) for split in SPLITS} for who in SIDES}
    return summaries, samples


def row_of(head: dict, name: str) -> dict:
    return next(r for r in head["rows"] if r["metric"] == name)


def test_a_clear_gap_is_flagged_with_its_interval_and_n():
    summaries, samples = three(side([1.0] * 30, [0.0] * 25), side([0.5] * 30, [0.5] * 25))
    row = row_of(headline(summaries, samples), m.FACT_RECALL)
    assert {"metric", "dev", "holdout", "gap", "flagged", "n", "interval", "why"} <= set(row)
    assert row["gap"] == {"starter": 0.0, "candidate": 1.0, "reference": 0.0}
    assert row["flagged"] is True and row["interval"] == [1.0, 1.0] and row["why"] is None
    assert row["n"] == {"dev": {who: 30 for who in SIDES}, "holdout": {who: 25 for who in SIDES}}


@pytest.mark.parametrize("holdout_n, flagged", [(MIN_HOLDOUT_N - 1, None), (MIN_HOLDOUT_N, True)])
def test_fewer_than_20_holdout_questions_are_never_flagged(holdout_n, flagged):
    # injection_resistance on only `holdout_n` of 40 holdout questions: a gap of 1.0 is judged from 20 on
    summaries, samples = three(side([1.0] * 30, [0.0] * holdout_n + [None] * (40 - holdout_n), m.INJECTION_RESISTANCE),
                               side([1.0] * 30, [1.0] * holdout_n + [None] * (40 - holdout_n), m.INJECTION_RESISTANCE))
    row = row_of(headline(summaries, samples), m.INJECTION_RESISTANCE)
    assert row["flagged"] is flagged and row["n"]["holdout"]["candidate"] == holdout_n
    if flagged is None:
        assert row["interval"] is None and row["why"] == f"holdout n {holdout_n} < {MIN_HOLDOUT_N}"


def test_nothing_is_judged_against_a_reference_that_never_built():
    summaries, samples = three(side([1.0] * 30, [0.0] * 25), side([0.5] * 30, [0.5] * 25))
    row = row_of(headline(summaries, samples, unbuilt=("reference",)), m.FACT_RECALL)
    assert (row["flagged"], row["interval"], row["why"]) == (None, None, "the reference did not build")


def test_abstention_accuracy_at_the_never_abstain_baseline_is_never_green():
    # 24 of 30 questions answerable: never abstaining scores 24/30 = 0.8, and the reference scores 0.8 too
    never = [(i % 5 != 0, False) for i in range(30)]
    summaries, samples = three(abstaining(never, never), abstaining(never, never))
    head = headline(summaries, samples)
    row = row_of(head, m.ABSTENTION_ACCURACY)
    assert row["baseline"] == {"dev": 0.8, "holdout": 0.8} and row["dev"]["candidate"] == pytest.approx(0.8)
    assert judge(row["dev"]) == "good"  # the old colour: "near the reference"
    assert judge(row["dev"], row["baseline"]["dev"]) == ""
    assert judge({"starter": 0.8, "candidate": 0.9, "reference": 0.9}, 0.8) == "good"  # above the baseline it can be
    assert never_abstain([]) is None
    f1 = row_of(head, m.ABSTENTION_F1)  # never abstaining scores 0 on abstention_f1: 0 is no success either
    assert f1["baseline"] == {"dev": 0.0, "holdout": 0.0} and f1["dev"]["candidate"] == 0.0
    assert judge(f1["dev"]) == "good" and judge(f1["dev"], f1["baseline"]["dev"]) == ""


def test_build_times_are_compared_only_like_with_like():
    cold, mixed = {"starter": False, "candidate": False, "reference": False}, {"starter": False, "candidate": True,
                                                                               "reference": False}
    assert alike(cold, "candidate", "starter") and not alike(mixed, "candidate", "starter")
    assert not alike({"starter": None, "candidate": None}, "candidate", "starter")  # unknown compares with nothing
    assert build_note(cold) == "" and build_note(dict.fromkeys(SIDES, True)) == ""
    assert build_note({"starter": False, "candidate": False, "reference": True})  # the reference's came from the cache
    assert build_note(mixed) == "not comparable: starter built cold, candidate loaded from the cache, reference built cold"
    for cached, arrow in ((cold, True), (mixed, False)):
        card = types.SimpleNamespace(latency={"cached": cached, "build_seconds": dict.fromkeys(SIDES, 4.3) | {"candidate": 0.24},
                                              "pipeline_seconds": dict.fromkeys(SIDES, 5.0)})
        for line in (rubric._index(card), rubric._pipeline_seconds(card)):
            assert ("→" in line) is arrow, line
            assert ("not comparable" in line) is not arrow, line
    assert "loaded from cache in 0.24 s" in rubric._index(card)


def golden(qid: str) -> GoldenQuestion:
    return GoldenQuestion(qid, f"question {qid}?", True, "an answer", ("fact",), (Evidence("doc.md", "quote"),), ())


def test_failure_examples_are_ones_the_reference_answers_right_first():
    # Candidate: five generation misses. The reference gets d1 and h2 right, misses d0, d3 and h4. d0's tag is
    # one no other has: showing one example per tag must not put it before h2, which the reference gets right.
    cand = {"dev": [sample(f"d{i}", failure="generation_miss", tags=("numeric",) if i == 0 else ("table",))
                    for i in (0, 1, 3)],
            "holdout": [sample(f"h{i}", failure="generation_miss", tags=("table",)) for i in (2, 4)]}
    ref = {"dev": [sample("d0", failure="retrieval_miss"), sample("d1"), sample("d3", failure="context_miss")],
           "holdout": [sample("h2"), sample("h4", failure="generation_miss")]}
    questions = {(split, s.id): golden(s.id) for split in SPLITS for s in cand[split]}
    examples = failures({"starter": ref, "candidate": cand, "reference": ref}, questions, {}, 30.0)["examples"]
    shown = [(ex["id"], ex["reference_misses"]) for ex in examples["generation_miss"]]
    assert shown == [("d1", False), ("h2", False), ("d0", True)]  # the reference's right answers, then one it misses


# --- three candidates, run for real --------------------------------------------------------------------


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


real = pytest.mark.skipif(not HOLDOUT.is_file() or not _importable("grader.solutions"),
                          reason="golden_set/holdout.jsonl or grader/solutions is absent (the candidate's bundle)")


class DevAnswers:
    """The starter, except that a question of golden_set/dev.jsonl gets its golden answer (or an abstention),
    citing the starter's chunks that hold its evidence quotes, ranked first and put in the context."""

    def __init__(self, starter, questions: Sequence[GoldenQuestion]):
        self.starter, self.config, self.index_stats = starter, starter.config, starter.index_stats
        self.golden = {q.question: q for q in questions}

    def search(self, query: str, k: int) -> list[Hit]:
        return self.starter.search(query, k)

    def answer(self, question: str) -> Answer:
        answer, gold = self.starter.answer(question), self.golden.get(question)
        if gold is None:
            return answer
        cited = [c for c in self.starter.chunks if any(m.covers(c, item) for item in gold.evidence)]
        ids = [c.chunk_id for c in cited]
        hits = [Hit(c, 100.0) for c in cited] + [h for h in answer.retrieved if h.chunk.chunk_id not in ids]
        return dataclasses.replace(answer, text=gold.answer, citations=tuple(ids), abstained=not gold.answerable,
                                   retrieved=tuple(hits[: self.config.k_retrieve]),
                                   context=tuple(ids + [c for c in answer.context if c not in ids]))


def build_dev_answers(config: Config, documents: Sequence[Document]) -> DevAnswers:
    import exercise.pipeline

    return DevAnswers(exercise.pipeline.build_pipeline(config, documents), read_golden(DEV))


def build_honest(config: Config, documents: Sequence[Document]):
    """Tasks 1 and 2 done honestly: the reference's structure-aware chunks and hybrid retrieval, the starter's
    extractive generator and its first-k context."""
    from exercise.embedding import EmbeddingCache
    from exercise.generation import ExtractiveGenerator
    from exercise.pipeline import StarterPipeline
    from grader.solutions.chunking import StructureChunker
    from grader.solutions.retrieval import make_retriever

    chunker = StructureChunker(config.chunk_size)
    chunks = [chunk for document in documents for chunk in chunker.chunk(document)]
    cache = EmbeddingCache(config.cache_dir)
    retriever = make_retriever(config, cache)
    started = time.perf_counter()
    retriever.index(chunks)
    stats = IndexStats(len(chunks), time.perf_counter() - started, cache.last_build["cached"])
    return StarterPipeline(config, documents, chunks, retriever, ExtractiveGenerator(config.answer_sentences), stats)


def run_both_splits(pipeline: str, config: Config, both: Path) -> dict[str, list[Sample]]:
    """One harness run over `both` (dev's lines, then holdout's), split back into dev and holdout samples:
    one pipeline build for the two splits."""
    dev = {q.id for q in read_golden(DEV)}
    run = start_run(both, CORPUS, config, pipeline, timeout_s=120.0)
    samples = list(run.questions())
    assert not [s.error for s in samples if s.error], pipeline
    return {"dev": [s for s in samples if s.id in dev], "holdout": [s for s in samples if s.id not in dev]}


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[Sample]]]:
    """Samples per pipeline: starter, reference, dev_answers, identical and honest."""
    both = tmp_path_factory.mktemp("golden") / "dev-and-holdout.jsonl"
    both.write_text(DEV.read_text(encoding="utf-8").rstrip("\n") + "\n" + HOLDOUT.read_text(encoding="utf-8"),
                    encoding="utf-8")
    bm25 = Config(retriever="bm25")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RUNS_DIR_ENV, str(tmp_path_factory.mktemp("runs")))
        for name, build in (("flags_dev_answers", build_dev_answers), ("flags_honest", build_honest)):
            module = types.ModuleType(name)
            module.build_pipeline = build  # type: ignore[attr-defined]
            patch.setitem(sys.modules, name, module)
        return {"starter": run_both_splits("exercise", bm25, both),
                "reference": run_both_splits("grader.solutions", Config(), both),
                "dev_answers": run_both_splits("flags_dev_answers", bm25, both),
                "identical": run_both_splits("exercise", bm25, both),
                "honest": run_both_splits("flags_honest", Config(retriever="hybrid", chunk_size=2000), both)}


def graded(sides: dict, candidate: str) -> dict:
    """The headline with `candidate` in the candidate's place, beside the starter and the reference."""
    summaries, samples = three(sides[candidate], sides["reference"], sides["starter"])
    return headline(summaries, samples)


def flags(head: dict) -> dict[str, tuple]:
    return {r["metric"]: (r["flagged"], r["interval"], r["why"]) for r in head["rows"]}


@pytest.mark.slow
@real
def test_a_candidate_who_answers_from_the_dev_set_is_flagged_on_every_metric_it_inflates(sides):
    head = graded(sides, "dev_answers")
    inflated = [r["metric"] for r in head["rows"] if r["dev"]["candidate"] is not None and r["dev"]["starter"] is not None
                and r["dev"]["candidate"] > r["dev"]["starter"] + 0.005 and r["n"]["holdout"]["candidate"] >= MIN_HOLDOUT_N]
    assert {m.EVIDENCE_RECALL_AT[5], m.CITATION_PRECISION, m.FACT_RECALL, m.ANSWER_F1} <= set(inflated), flags(head)
    assert [name for name in inflated if not row_of(head, name)["flagged"]] == [], flags(head)
    for name in (m.EVIDENCE_RECALL_AT[5], m.FACT_RECALL):  # its holdout is the starter's, sample for sample
        assert row_of(head, name)["holdout"]["candidate"] == row_of(head, name)["holdout"]["starter"]


@pytest.mark.slow
@real
@pytest.mark.parametrize("candidate", ["identical", "honest"])
def test_honest_candidates_are_never_flagged(sides, candidate):
    head = graded(sides, candidate)
    assert [name for name, (flagged, _, _) in flags(head).items() if flagged] == [], flags(head)
    judged = [r for r in head["rows"] if r["flagged"] is not None]
    assert len(judged) >= 8, flags(head)  # most metrics have the questions to be judged on
    assert all(r["interval"][0] <= r["interval"][1] for r in judged)


@pytest.mark.slow
@real
def test_the_honest_candidate_moved_retrieval(sides):
    # it is a real candidate, not the starter twice: tasks 1 and 2 lift evidence_recall@5 on both splits
    head = graded(sides, "honest")
    row = row_of(head, m.EVIDENCE_RECALL_AT[5])
    assert all(row[split]["candidate"] > row[split]["starter"] + 0.05 for split in SPLITS)
    assert np.isfinite(row["gap"]["candidate"])
