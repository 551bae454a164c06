"""harness/checks.py and what uses it: every contract problem named at once, the same in `ragkata eval` (score_sample
in-process) and through the grader's transport (records.answer_to_json -> answer_from_json), and never a crash."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from exercise.contracts import Answer, Chunk, Hit, Usage
from harness.checks import answer_problems, malformed_error
from harness.golden import Evidence, GoldenQuestion
from harness.records import MalformedAnswer, answer_from_json, answer_to_json
from harness.runner import read_samples, start_run
from harness.scoring import SourceCorpus, score_sample
from tests.conftest import FakePipeline

DOC = "Upload objects up to 5 GB in one request."
TEXTS = {"a.md": DOC}
CORPUS = SourceCorpus(TEXTS, {})
GOLDEN = GoldenQuestion("q1", "How large can an object be?", True, "Up to 5 GB.", ("5 GB",),
                        (Evidence("a.md", "objects up to 5 GB"),), ("numeric",))
CHUNK = Chunk("a.md#1", "a.md", DOC, 0, len(DOC))


def good(**changes) -> Answer:
    return replace(Answer("?", "Up to 5 GB.", ("a.md#1",), False, (Hit(CHUNK, 0.7),), ("a.md#1",), {"total": 2.0}),
                   **changes)


def transported(answer) -> Answer:
    """Through the worker's pipe: answer_to_json, the JSON text (NaN and Infinity included), answer_from_json."""
    return answer_from_json("?", json.loads(json.dumps(answer_to_json(answer))))


def transport_problems(answer) -> list[str]:
    with pytest.raises(MalformedAnswer) as caught:
        transported(answer)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return list(caught.value.problems)


def test_a_well_formed_answer_has_no_problem_and_crosses_the_transport_unchanged():
    assert answer_problems(good(), TEXTS) == []
    assert transported(good()) == good()
    # numpy scores, offsets and bools (what a faiss ranking and a threshold give) are numbers and bools too
    numpy_hit = Hit(Chunk("a.md#1", "a.md", DOC, np.int64(0), np.int64(len(DOC))), np.float32(0.7))
    numpy_answer = good(retrieved=(numpy_hit,), abstained=np.bool_(False))
    assert answer_problems(numpy_answer, TEXTS) == []
    assert transported(numpy_answer) == good(retrieved=(Hit(CHUNK, pytest.approx(0.7)),))


def test_str_citations_are_malformed_not_split_into_characters():
    answer = good(citations="a.md#1")
    (problem,) = answer_problems(answer, TEXTS)
    assert problem.startswith("citations: a str ('a.md#1') is not a list of chunk ids; a plain str is the classic")
    assert answer_to_json(answer)["citations"] == "a.md#1"  # the transport keeps the str a str
    assert transport_problems(answer) == [problem]
    scored = score_sample(GOLDEN, answer, None, CORPUS, 1.0)
    assert scored.error == f"malformed: {problem}" and scored.failure == "error"
    assert scored.citations == () and scored.scores == score_sample(GOLDEN, None, "x", CORPUS, 1.0).scores


def test_context_ids_never_retrieved_are_malformed():
    answer = good(context=("a.md#1", "ghost#1", "ghost#2"))
    expected = ["context: 'ghost#1', 'ghost#2' not among the retrieved hits' chunk ids (the context is chosen from them)"]
    assert answer_problems(answer, TEXTS) == expected
    assert transport_problems(answer) == expected
    assert score_sample(GOLDEN, answer, None, CORPUS, 1.0).error == "malformed: " + expected[0]
    # a citation outside the context is a quality problem the metrics measure (citation_valid), not malformed
    assert answer_problems(good(citations=("a.md#1", "ghost#1")), TEXTS) == []


@pytest.mark.parametrize("score", [float("nan"), float("inf"), np.float32("nan")])
def test_a_non_finite_hit_score_is_malformed(score):
    answer = good(retrieved=(Hit(CHUNK, score),))
    assert answer_problems(answer, TEXTS) == ["retrieved[0].score: nan is not a finite number"] if score != float("inf") \
        else ["retrieved[0].score: inf is not a finite number"]
    assert transport_problems(answer) == answer_problems(answer, TEXTS)
    assert score_sample(GOLDEN, answer, None, CORPUS, 1.0).error.startswith("malformed: retrieved[0].score: ")


@pytest.mark.parametrize("start, end, problem", [
    (-1, 10, "retrieved[0].chunk.start: -1 is negative"),
    (0, len(DOC) + 1, f"retrieved[0].chunk.end: {len(DOC) + 1} is past the end of 'a.md' ({len(DOC)} characters)"),
    (9, 3, "retrieved[0].chunk: start 9 is after end 3"),
])
def test_offsets_outside_the_document_are_malformed(start, end, problem):
    answer = good(retrieved=(Hit(Chunk("a.md#1", "a.md", DOC, start, end), 0.7),))
    assert answer_problems(answer, TEXTS) == [problem]
    assert score_sample(GOLDEN, answer, None, CORPUS, 1.0).error == f"malformed: {problem}"


def test_a_chunk_of_an_unknown_document_is_not_malformed_and_the_transports_gaps_are_not_flagged():
    stranger = Hit(Chunk("own#1", "own.md", "objects up to 5 GB", 0, 5000), 0.1)  # no such document: covers nothing
    answer = good(retrieved=(Hit(CHUNK, 0.7),) + (stranger,) * 21 + (Hit(Chunk("late#1", "a.md", DOC, 0, 6), 0.0),),
                  context=("a.md#1", "late#1"))
    assert answer_problems(answer, TEXTS) == []
    rebuilt = transported(answer)  # ranks 2..20 sent, 21 and 22 left out and filled with empty hits, 23 sent
    assert rebuilt.retrieved[20].chunk == Chunk("", "", "", 0, 0) and answer_problems(rebuilt, TEXTS) == []
    assert score_sample(GOLDEN, answer, None, CORPUS, 1.0).error is None


def test_every_problem_is_reported_at_once():
    answer = Answer("?", 5, "a.md#1", "no", (Hit(Chunk("a.md#1", "a.md", DOC, -1, 999), float("nan")),
                                             Hit(Chunk("b#1", "a.md", DOC, 5, 2), float("nan"))),
                    ("ghost#1",), {"total": float("inf")}, usage=Usage(prompt_tokens=1.5))
    expected = [
        "text: an int (5) is not a str",
        "citations: a str ('a.md#1') is not a list of chunk ids; a plain str is the classic mistake, wrap it: ('a.md#1',)",
        "abstained: a str ('no') is not a bool",
        "retrieved[0].chunk.start: -1 is negative",
        "retrieved[0].chunk.end: 999 is past the end of 'a.md' (41 characters)",
        "retrieved[0-1].score: nan is not a finite number",
        "retrieved[1].chunk: start 5 is after end 2",
        "context: 'ghost#1' not among the retrieved hits' chunk ids (the context is chosen from them)",
        "latency_ms['total']: inf is not a finite number",
        "usage.prompt_tokens: a float (1.5) is not an int",
    ]
    assert answer_problems(answer, TEXTS) == expected
    assert malformed_error(expected).startswith("malformed: text: an int (5) is not a str; citations: ")
    # the transport cannot check ends against the corpus (score_sample does); everything else is the same
    assert transport_problems(answer) == [p for p in expected if "past the end" not in p]


@pytest.mark.parametrize("returned, expected", [
    ({"text": "Up to 5 GB."}, ["answer: a dict is not an Answer (return exercise.contracts.Answer(...))"]),
    (None, ["answer: None is not an Answer (return exercise.contracts.Answer(...))"]),
    (types.SimpleNamespace(text="x", citations=("a.md#1",), abstained=False), ["retrieved: missing", "context: missing",
                                                                              "latency_ms: missing"]),
    (types.SimpleNamespace(text="x", citations={"a.md#1"}, abstained=False, retrieved=[], context=[], latency_ms={}),
     ["citations: a set is not a list or tuple of chunk ids"]),
    (good(retrieved=((CHUNK, 0.7),)), ["retrieved[0].chunk: missing", "retrieved[0].score: missing"]),
    (good(context=["a.md#1", 7]), ["context[1]: an int (7) is not a str chunk id"]),
])
def test_objects_that_are_not_answers_are_named_not_crashed_on(returned, expected):
    assert answer_problems(returned, TEXTS) == expected
    if returned is not None:
        assert transport_problems(returned) == expected


def test_a_candidates_own_answer_class_with_the_right_fields_is_accepted():
    @dataclasses.dataclass(frozen=True)
    class TheirAnswer:  # no `question`, no `usage`
        text: str
        citations: tuple
        abstained: bool
        retrieved: tuple
        context: tuple
        latency_ms: dict

    theirs = TheirAnswer("Up to 5 GB.", ("a.md#1",), False, (Hit(CHUNK, 0.7),), ("a.md#1",), {"total": 2.0})
    assert answer_problems(theirs, TEXTS) == []
    assert score_sample(GOLDEN, theirs, None, CORPUS, 1.0).failure == "ok"
    assert transported(theirs) == good(question="?")


def test_answer_from_json_rejects_what_is_not_a_json_object_and_coerces_nothing():
    with pytest.raises(MalformedAnswer, match="^answer: a list is not a JSON object"):
        answer_from_json("?", [])
    sent = answer_to_json(good())
    with pytest.raises(MalformedAnswer, match=r"^abstained: a str \('false'\) is not a bool$"):
        answer_from_json("?", {**sent, "abstained": "false"})  # bool("false") would have been True
    with pytest.raises(MalformedAnswer, match=r"^retrieved\[0\]\.chunk\.start: a str \('0'\) is not an int$"):
        answer_from_json("?", {**sent, "retrieved": [{**sent["retrieved"][0], "start": "0"}]})
    assert issubclass(MalformedAnswer, ValueError)


def test_eval_records_a_pipeline_that_returns_a_dict_as_malformed_and_goes_on(runs, monkeypatch, fixture_corpus,
                                                                               fixture_golden):
    class DictOnKOS(FakePipeline):
        def answer(self, question: str):
            if "KOS-4032" in question:
                return dataclasses.asdict(super().answer(question))  # a dict with Answer's keys is still not one
            return super().answer(question)

    module = types.ModuleType("dict_pipeline")
    module.build_pipeline = DictOnKOS
    monkeypatch.setitem(sys.modules, "dict_pipeline", module)
    run = start_run(fixture_golden, fixture_corpus, pipeline="dict_pipeline")
    for _ in run.questions():
        pass
    summary = run.finish()
    samples = {s.id: s for s in read_samples(run.directory / "samples.jsonl")}
    assert samples["fx-02"].error == "malformed: answer: a dict is not an Answer (return exercise.contracts.Answer(...))"
    assert samples["fx-02"].failure == "error" and samples["fx-02"].retrieved == ()
    assert summary.summary.counts["errors"] == 1 and len(samples) == summary.summary.counts["questions"] > 1
    assert all(s.error is None for i, s in samples.items() if i != "fx-02")
