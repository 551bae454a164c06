"""The grader: a broken candidate is graded without crashing the grader, every failure is scored and
shown, the HTML stands alone, the rubric has its nine criteria, the scorecard round-trips through its
record, and ratings fold back (or are refused).

Pipelines run in real worker subprocesses on the fixture corpus, with BM25 (RAGKATA_RETRIEVER) so no
embedding model loads, and a half-second time limit so hanging questions cost little. The starter
stands in for the reference, so these tests run where grader/solutions is held back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ScriptedLLM
from exercise.contracts import SCORED_DEPTH
from grader import rubric, sandbox
from grader.card import Scorecard
from grader.changes import parse_pytest_summary, run_candidate_tests, what_changed
from grader.cli import app, main
from grader.grade import fold_ratings, grade
from grader.isolation import Jail, bwrap_problem
from grader.sandbox import (INTERVIEWER_ROOT, Limits, Session, Target, endpoint_host, interviewer_endpoint,
                            question_timeout, run_target, without_userinfo)
from grader.scorecard import index_line, usd
from grader.timeline import build_timeline
from harness import metrics as m
from harness.corpus import load_corpus
from harness.runner import read_samples

FIXTURES = Path(__file__).parent / "fixtures"
BROKEN = FIXTURES / "broken_candidate"
GOLDEN = FIXTURES / "golden.jsonl"
CORPUS = FIXTURES / "corpus"
TIMEOUT_S = 0.5
ISOLATION = "bwrap" if bwrap_problem() is None else "none"  # jailed where bubblewrap works; tests/test_isolation.py needs it
CRITERIA = ["measurement_discipline", "retrieval_vs_generation", "chunking_rationale", "retrieval_design",
            "grounding_citations", "abstention", "latency_cost", "code_quality", "explaining_results"]


def mode(question: str) -> str:
    """What the broken candidate does with this question (tests/fixtures/broken_candidate/exercise/pipeline.py)."""
    return ("raise", "hang", "nonsense")[zlib.crc32(question.encode()) % 3]


QUESTIONS = {json.loads(line)["id"]: json.loads(line)["question"] for line in GOLDEN.read_text().splitlines()}


def make_candidate(root: Path, pipeline_source: str | None = None) -> Path:
    """A candidate folder: the broken fixture, or its config/contracts with another pipeline.py."""
    shutil.copytree(BROKEN, root, ignore=shutil.ignore_patterns("__pycache__"))
    if pipeline_source is not None:
        (root / "exercise" / "pipeline.py").write_text(pipeline_source)
    return root


def run_grade(candidate: Path, out: Path, **kwargs) -> Scorecard:
    defaults = dict(dev=GOLDEN, holdout=GOLDEN, corpus=CORPUS, reference="exercise",
                    limits=Limits(timeout_s=TIMEOUT_S, memory_mb=2048), run_tests=False, isolation=ISOLATION)
    return grade(candidate, out, **{**defaults, **kwargs})


@pytest.fixture(autouse=True)
def bm25_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKATA_RETRIEVER", "bm25")


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scorecard, Path, float]:
    """The broken candidate graded once for the module: (scorecard, out folder, seconds taken)."""
    tmp = tmp_path_factory.mktemp("broken")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGKATA_RETRIEVER", "bm25")
        started = time.perf_counter()
        card = run_grade(make_candidate(tmp / "candidate"), tmp / "out")
    return card, tmp / "out", time.perf_counter() - started


def test_the_three_files_are_written_and_every_failure_is_scored(broken):
    card, out, _ = broken
    for name in ("scorecard.json", "scorecard.md", "scorecard.html", "ratings.template.json"):
        assert (out / name).is_file(), name
    samples = read_samples(out / "runs" / "candidate-dev" / "samples.jsonl")
    assert [s.id for s in samples] == list(QUESTIONS)  # every question scored, in order
    for sample in samples:
        kind = mode(sample.question)
        if kind == "raise":
            assert sample.failure == "error" and sample.error.startswith("RuntimeError: the broken candidate")
        elif kind == "hang":
            assert sample.failure == "error" and sample.error.startswith("TimeoutError")
        else:
            assert sample.error is None and sample.scores[m.CITATION_VALID] == 0.0
    assert {mode(q) for q in QUESTIONS.values()} == {"raise", "hang", "nonsense"}  # the fixture exercises all three
    row = next(r for r in card.headline["rows"] if r["metric"] == m.CITATION_VALID)
    assert row["dev"]["candidate"] == 0.0
    assert card.summaries["candidate"]["dev"].counts["errors"] == sum(s.error is not None for s in samples)


def test_timeouts_are_enforced_and_the_worker_restarts(broken):
    card, out, seconds = broken
    hangs = sum(mode(q) == "hang" for q in QUESTIONS.values()) * 2  # dev and holdout
    assert card.sides["candidate"].timeouts == hangs
    for sample in read_samples(out / "runs" / "candidate-holdout" / "samples.jsonl"):
        if mode(sample.question) == "hang":
            assert TIMEOUT_S * 1000 <= sample.latency_ms["total"] < TIMEOUT_S * 1000 + 1500
    assert seconds < 60
    md = (out / "scorecard.md").read_text()
    assert f"{hangs} question(s) timed out (limit {TIMEOUT_S:g} s per question)" in md


def test_starter_and_reference_are_scored_beside_the_candidate(broken):
    card, out, _ = broken
    assert card.sides["starter"].errors == 0 and card.sides["reference"].errors == 0
    assert card.failures["counts"]["error"] == {"starter": 0, "candidate": card.sides["candidate"].errors, "reference": 0}
    assert card.failures["examples"]["error"], "error examples open the conversation"
    example = card.failures["examples"]["error"][0]
    assert example["opener"] and example["expected"]["evidence"]
    assert (out / "runs" / "starter-holdout" / "summary.json").is_file()


def test_html_is_one_self_contained_file(broken):
    _, out, _ = broken
    html = (out / "scorecard.html").read_text()
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)  # markup only: escaped candidate text cannot form a tag
    assert tags and not [t for t in tags if re.match(r"<(script|link|img|iframe|object|embed|image|use)\b", t)]
    assert not [t for t in tags if re.search(r"\b(src|xlink:href)=", t) or re.search(r'href="(?!#)', t)]
    style = html.split("<style>")[1].split("</style>")[0]
    assert html.count("<style>") == 1 and "url(" not in style and "@import" not in style
    assert html.count("<svg") >= 2  # headline bars and the session timeline
    for n, title in enumerate(("Headline", "Per tag", "Failure attribution", "Latency", "Session timeline",
                               "What changed", "Rubric"), 1):
        assert f"{n}. {title}" in html
    assert html.index("1. Headline") < html.index("7. Rubric")


def test_candidate_output_is_escaped(tmp_path):
    evil = '''
from exercise.contracts import Answer, Chunk, Hit


def build_pipeline(config, documents):
    return Evil()


class Evil:
    def answer(self, question):
        hit = Hit(Chunk("<img src=x onerror=alert(1)>", "doc", "<script>alert(2)</script>", 0, 1), 1.0)
        return Answer(question, "<script>alert(3)</script> https://evil.example", ("<b>cite</b>",), False, (hit,),
                      (hit.chunk.chunk_id,), {"total": 1.0})
'''
    run_grade(make_candidate(tmp_path / "evil", evil), tmp_path / "out")
    html = (tmp_path / "out" / "scorecard.html").read_text()
    assert "<script>" not in html and "<img src" not in html and "<b>cite</b>" not in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html


def test_a_pipeline_that_cannot_start_gives_a_scorecard_of_errors(tmp_path):
    card = run_grade(make_candidate(tmp_path / "c", "raise ImportError('no module named faiss_gpu')\n"), tmp_path / "out")
    samples = read_samples(tmp_path / "out" / "runs" / "candidate-dev" / "samples.jsonl")
    assert len(samples) == len(QUESTIONS) and all(s.failure == "error" for s in samples)
    assert all("PipelineBuildError: ImportError: no module named faiss_gpu" in s.error for s in samples)
    assert card.sides["candidate"].build is None  # no worker was ever ready
    assert card.latency["pipeline_seconds"]["candidate"] is None and card.latency["pipeline_seconds"]["starter"] is not None
    (incident,) = card.sides["candidate"].incidents
    assert incident.startswith("candidate pipeline failed at start-up: ImportError")
    for name in ("scorecard.md", "scorecard.html"):
        assert "failed at start-up" in (tmp_path / "out" / name).read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux only")
def test_crashes_and_the_memory_cap_are_scored_failures(tmp_path):
    source = '''
import os
from exercise.contracts import Answer


def build_pipeline(config, documents):
    return Greedy()


class Greedy:
    def answer(self, question):
        if "archive" in question:
            os._exit(3)
        if "KOS-4032" in question:
            blob = bytearray(8 * 1024 ** 3)
        return Answer(question, "fine", (), False, (), (), {"total": 1.0})
'''
    card = run_grade(make_candidate(tmp_path / "c", source), tmp_path / "out", holdout=None,
                     limits=Limits(timeout_s=5, memory_mb=1024))
    samples = {s.id: s for s in read_samples(tmp_path / "out" / "runs" / "candidate-dev" / "samples.jsonl")}
    assert samples["fx-01"].error.startswith("WorkerCrash: the worker exited with status 3")
    assert samples["fx-02"].error.startswith("MemoryError")
    assert all(samples[i].error is None for i in ("fx-03", "fx-04", "fx-05", "fx-06"))  # answered after the restart
    assert card.sides["candidate"].crashes == 1


WARM_PIPELINE = """
import time
from .contracts import Answer, Chunk, Hit


def build_pipeline(config, documents):
    return Warm(documents)


class Warm:
    def __init__(self, documents):
        self.chunks = [Chunk(f"{d.doc_id}#0", d.doc_id, d.text[:200], 0, min(200, len(d.text))) for d in documents]
        self.warmed = []

    def warm_up(self, questions):
        time.sleep(1.5)  # three times the per-question limit
        self.warmed = list(questions)

    def answer(self, question):
        hit = Hit(self.chunks[0], 1.0)
        return Answer(question=question, text="warm" if question in self.warmed else "cold", citations=(hit.chunk.chunk_id,),
                      abstained=False, retrieved=(hit,), context=(hit.chunk.chunk_id,), latency_ms={"total": 0.1})
"""


def test_warm_up_gets_every_question_before_the_clock_starts(tmp_path):
    card = run_grade(make_candidate(tmp_path / "candidate", WARM_PIPELINE), tmp_path / "out")
    assert card.sides["candidate"].timeouts == 0 and card.sides["candidate"].errors == 0
    samples = read_samples(tmp_path / "out" / "runs" / "candidate-dev" / "samples.jsonl")
    assert samples and {s.answer for s in samples} == {"warm"}


def test_a_stuck_pipeline_is_stopped_and_the_rest_scored_as_not_run(tmp_path):
    source = "import time\n\n\ndef build_pipeline(config, documents):\n    return Stuck()\n\n\nclass Stuck:\n" \
             "    def answer(self, question):\n        time.sleep(60)\n"
    card = run_grade(make_candidate(tmp_path / "c", source), tmp_path / "out", holdout=None,
                     limits=Limits(timeout_s=0.3, memory_mb=2048, max_in_a_row=4))
    errors = [s.error for s in read_samples(tmp_path / "out" / "runs" / "candidate-dev" / "samples.jsonl")]
    assert [e.split(":")[0] for e in errors] == ["TimeoutError"] * 4 + ["NotRun"] * 2
    assert "stopped because 4 questions in a row timed out or crashed; 2 remaining" in card.sides["candidate"].incidents[0]


def test_a_side_that_runs_past_its_wall_time_limit_is_stopped(tmp_path):
    source = "import time\n\n\ndef build_pipeline(config, documents):\n    return Slow()\n\n\nclass Slow:\n" \
             "    def answer(self, question):\n        time.sleep(1.0)\n        raise RuntimeError('slow')\n"
    card = run_grade(make_candidate(tmp_path / "c", source), tmp_path / "out", holdout=None,
                     limits=Limits(timeout_s=5, memory_mb=2048, side_timeout_s=3.0))  # six questions need over 6 s
    errors = [s.error for s in read_samples(tmp_path / "out" / "runs" / "candidate-dev" / "samples.jsonl")]
    assert len(errors) == 6 and errors[-1].startswith("NotRun: the side's wall-time limit of 3 s ran out")
    assert not any(e.startswith("TimeoutError") for e in errors)  # a question the limit cut short is not a time-out
    assert card.sides["candidate"].not_run == sum(e.startswith("NotRun") for e in errors) >= 2


DEEP_CITATION = '''
import dataclasses
from exercise.contracts import Answer, Chunk, Hit


def build_pipeline(config, documents):
    return Deep(dataclasses.replace(config, k_context=7), documents)


class Deep:
    """Cites the whole lifecycle guide, which it ranks 23rd, below the scored top 20."""

    def __init__(self, config, documents):
        self.config = config  # the Config it really uses, as the reference applies its own defaults
        self.guide = next(d for d in documents if d.doc_id == "guides/lifecycle.md")

    def answer(self, question):
        filler = [Hit(Chunk(f"filler#{i}", "nowhere.md", "nothing to see", 0, 14), 1.0 / i) for i in range(1, 30)]
        deep = Hit(Chunk("lifecycle#all", self.guide.doc_id, self.guide.text, 0, len(self.guide.text)), 0.01)
        return Answer(question, "After 90 days, to cold-vault.", ("lifecycle#all",), False,
                      tuple(filler[:22] + [deep] + filler[22:]), ("lifecycle#all",), {"total": 1.0})
'''


def test_a_chunk_cited_below_the_scored_depth_survives_the_worker(tmp_path):
    card = run_grade(make_candidate(tmp_path / "c", DEEP_CITATION), tmp_path / "out", holdout=None)
    sample = {s.id: s for s in read_samples(tmp_path / "out" / "runs" / "candidate-dev" / "samples.jsonl")}["fx-01"]
    assert [hit.rank for hit in sample.retrieved][:SCORED_DEPTH] == list(range(1, SCORED_DEPTH + 1))
    (deep,) = sample.retrieved[SCORED_DEPTH:]  # the top 20, then only the cited chunk
    assert deep.chunk.chunk_id == "lifecycle#all" and deep.rank > SCORED_DEPTH
    assert sample.scores[m.EVIDENCE_RECALL_AT[10]] == 0.0  # retrieval is scored on the top 20 only...
    assert sample.scores[m.CITATION_PRECISION] == 1.0 and sample.failure == "ok"  # ...the citation resolves anyway
    guide = next(d for d in load_corpus(CORPUS) if d.doc_id == "guides/lifecycle.md")
    assert card.latency["context_chars"]["candidate"] == len(guide.text)  # context resolved through rank 23 too
    assert card.sides["candidate"].build.config["k_context"] == 7  # the Config the pipeline used, not the one asked


class ScriptedWorker:
    """Stands in for sandbox._Worker: reports ready, then answers each question with the next scripted answer."""

    def __init__(self, ready: dict, answers: list):
        self.messages, self.answers = [ready], list(answers)

    def send(self, message: dict) -> None:
        if "warm_up" in message:
            self.messages.append({"event": "warmed", "seconds": 0.0})
            return
        self.messages.append({"event": "answer", "key": message["key"], "answer": self.answers.pop(0)})

    def read(self, timeout_s: float) -> dict | None:
        return self.messages.pop(0) if self.messages else None

    def stop(self) -> None:
        pass

    kill = stop


def test_the_worker_messages_are_read_with_the_harness_records(monkeypatch, tmp_path):
    ready = {"event": "ready", "config": {"k_context": 3}, "peak_rss_mb": 50.0,
             "index": {"chunks": 4, "build_seconds": 0.5, "cached": True, "pipeline_seconds": 2.0}}
    hit = {"rank": 1, "chunk_id": "a#0", "doc_id": "a", "text": "t", "start": 0, "end": 1, "score": 1.0}
    good = {"text": "x", "citations": ["a#0"], "abstained": False, "retrieved": [hit], "context": ["a#0"],
            "latency_ms": {"retrieve": 1.0, "total": 2.0}}
    answers = [{**good, "retrieved": [{"chunk_id": "a#0"}]}, {**good, "retrieved": [{**hit, "rank": 0}]}, good,
               {**good, "latency_ms": {"total": float("nan")}}]
    monkeypatch.setattr(sandbox, "_Worker", lambda *args: ScriptedWorker(ready, answers))
    session = Session()
    outcomes = list(run_target(Target("candidate", "exercise", tmp_path),
                               [("k1", "q1"), ("k2", "q2"), ("k3", "q3"), ("k4", "q4")], CORPUS, Limits(),
                               tmp_path / "log", session))
    assert [o.error.split(":")[0] for o in outcomes[:2]] == ["malformed"] * 2  # a hit without fields; rank 0
    assert outcomes[0].answer is None and "retrieved[0].score: missing" in outcomes[0].error
    assert "rank" in outcomes[1].error
    answer = outcomes[2].answer
    assert outcomes[2].error is None and answer.citations == ("a#0",) and answer.retrieved[0].chunk.doc_id == "a"
    assert answer.latency_ms == {"retrieve": 1.0, "total": 2.0}
    assert outcomes[3].error == "malformed: latency_ms['total']: nan is not a finite number"  # never averaged
    assert session.build.config == {"k_context": 3}
    index = session.build.index
    assert (index.chunks, index.build_seconds, index.cached, index.pipeline_seconds) == (4, 0.5, True, 2.0)


class RecordingWorker(ScriptedWorker):
    """A ScriptedWorker that also records the time limit each read was given."""

    def __init__(self, ready: dict, answers: list):
        super().__init__(ready, answers)
        self.limits: list[float] = []

    def read(self, timeout_s: float) -> dict | None:
        self.limits.append(timeout_s)
        return super().read(timeout_s)


@pytest.mark.parametrize("config, limits, expected", [
    ({"generator": "extractive", "llm_timeout_s": 60.0}, Limits(timeout_s=30), 30.0),
    ({}, Limits(timeout_s=30), 30.0),  # a Config without the field: no model
    ({"generator": "llm", "llm_timeout_s": 60.0}, Limits(timeout_s=30), 30 + 3 * 60 + 3.0),  # 213 s
    ({"generator": "llm", "llm_timeout_s": 10.0}, Limits(timeout_s=0.5), 0.5 + 3 * 10 + 3.0),
    ({"generator": "llm", "llm_timeout_s": "soon"}, Limits(timeout_s=30), 213.0),  # unreadable: the default 60 s
    ({"generator": "llm", "llm_timeout_s": 60.0}, Limits(timeout_s=5, llm_timeout_s=5), 5.0),  # --timeout 5 given
])
def test_a_language_model_side_gets_room_for_generation_unless_timeout_was_given(config, limits, expected):
    assert question_timeout(limits, config) == pytest.approx(expected)


def test_the_per_question_limit_follows_the_built_config(monkeypatch, tmp_path):
    ready = {"event": "ready", "config": {"generator": "llm", "llm_timeout_s": 0.25}, "index": {"pipeline_seconds": 0.1}}
    answer = {"text": "x", "citations": [], "abstained": False, "retrieved": [], "context": [], "latency_ms": {}}
    workers: list[RecordingWorker] = []
    monkeypatch.setattr(sandbox, "_Worker", lambda *args: workers.append(RecordingWorker(ready, [answer])) or workers[-1])
    session = Session()
    (outcome,) = run_target(Target("candidate", "exercise", tmp_path), [("k1", "q1")], CORPUS, Limits(timeout_s=0.5),
                            tmp_path / "log", session)
    assert outcome.error is None and session.timeout_s == pytest.approx(0.5 + 3 * 0.25 + 3)
    assert workers[0].limits[-1] == pytest.approx(session.timeout_s)  # the answer was awaited that long


@pytest.mark.parametrize("url, host", [
    ("http://127.0.0.1:8081/v1", "127.0.0.1:8081"), ("https://user:pa55@api.example.com/v1?x=1", "api.example.com"),
    ("http://[::1]:9000/v1", "[::1]:9000"), ("not a url", None), ("", None), (None, None),
])
def test_the_endpoint_is_named_by_host_and_port_only(url, host):
    assert endpoint_host(url) == host


def test_userinfo_is_dropped_from_an_endpoint_url():
    assert without_userinfo("http://u:secret@10.0.0.5:8081/v1") == "http://10.0.0.5:8081/v1"
    assert without_userinfo("http://10.0.0.5:8081/v1") == "http://10.0.0.5:8081/v1"


def test_the_interviewers_key_comes_from_the_named_variable_and_stays_out_of_repr():
    environ = {"MY_KEY": "sk-interviewer", "RAGKATA_LLM_API_KEY": "sk-default"}
    endpoint = interviewer_endpoint("http://127.0.0.1:8081/v1", "m", "MY_KEY", [], environ)
    assert (endpoint.api_key, endpoint.api_key_env) == ("sk-interviewer", "MY_KEY") and "sk-" not in repr(endpoint)
    assert interviewer_endpoint(None, None, None, [], environ).api_key == "sk-default"  # the interviewer's Config's name
    assert interviewer_endpoint(None, None, None, [], {}).api_key is None
    assert endpoint.environment() == {"RAGKATA_LLM_BASE_URL": "http://127.0.0.1:8081/v1", "RAGKATA_LLM_MODEL": "m",
                                      "RAGKATA_GRADER_LLM_KEY": "sk-interviewer"}
    assert endpoint.scrub("401: bad key sk-interviewer") == "401: bad key ***"


@pytest.mark.parametrize("args, fragment", [
    (("ftp://host/v1", None, ["generator=llm"]), "is not an http or https URL with a host"),
    (("http://u:pw@/v1", None, []), "'http:///v1' is not an http"),  # the password is not repeated
    (("http://127.0.0.1:8081/v1", None, ["llm_base_url=http://x/v1"]), "--llm-base-url and --config llm_base_url"),
    ((None, "m", ["llm_model=n"]), "--llm-model and --config llm_model"),
])
def test_contradicting_or_malformed_endpoint_options_are_refused(args, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        interviewer_endpoint(*args[:2], None, args[2], {})


@pytest.mark.parametrize("value, text", [(None, "-"), (0.0, "0"), (0.000136, "0.000136"), (0.000068, "0.000068"),
                                         (0.0025, "0.0025"), (2.5, "2.50"), (1e-9, "< 0.000001")])
def test_dollars_are_shown_with_the_digits_a_fraction_of_a_cent_needs(value, text):
    assert usd(value) == text


SECRET = "sk-grader-test-0123456789-never-written"
REPLY = "Objects move to cold-vault after 90 days [1]."  # the scripted endpoint's every reply cites source [1]


def starter_candidate(root: Path) -> Path:
    """A candidate folder holding the starter's exercise/ as it is."""
    shutil.copytree(INTERVIEWER_ROOT / "exercise", root / "exercise", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def llm_graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scorecard, Path, ScriptedLLM]:
    """The starter graded as a candidate with generator=llm on a ScriptedLLM replying REPLY, through the CLI, once:
    (scorecard, out folder, server). Their own runs/ holds a run on another model at another endpoint."""
    tmp = tmp_path_factory.mktemp("llm")
    candidate = starter_candidate(tmp / "candidate")
    run = candidate / "runs" / "20261122T100500-nogit"
    run.mkdir(parents=True)
    theirs = {"generator": "llm", "llm_model": "smollm2-135m-instruct", "llm_base_url": "http://127.0.0.1:8081/v1"}
    (run / "spec.json").write_text(json.dumps({"golden": "golden_set/dev.jsonl", "config": theirs}))
    (run / "summary.json").write_text(json.dumps({"metrics": {}, "counts": {"questions": 6}, "complete": True,
                                                  "config": theirs}))
    with ScriptedLLM(pieces=(REPLY,)) as server:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAGKATA_RETRIEVER", "bm25")
            patch.setenv("GRADER_TEST_KEY", SECRET)
            out = tmp / "out"
            result = CliRunner().invoke(app, [
                "grade", "--candidate", str(candidate), "--dev", str(GOLDEN), "--holdout", str(GOLDEN),
                "--corpus", str(CORPUS), "--out", str(out), "--reference", "exercise", "--skip-tests", "--memory-mb", "0",
                "--config", "generator=llm", "--config", "llm_price_in=1.0", "--config", "llm_price_out=2.0",
                "--llm-base-url", server.url, "--llm-model", "interviewer-model", "--llm-api-key-env", "GRADER_TEST_KEY",
                "--isolation", ISOLATION])
        assert result.exit_code == 0, result.output
        yield Scorecard.from_json(json.loads((out / "scorecard.json").read_text())), out, server


def test_an_llm_candidate_calls_the_interviewers_endpoint_with_the_interviewers_key(llm_graded):
    card, out, server = llm_graded
    assert len(server.requests) == 6  # dev; the holdout repeats the same questions, answered from the reply cache
    assert {r["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert {r["body"]["model"] for r in server.requests} == {"interviewer-model"}
    samples = read_samples(out / "runs" / "candidate-dev" / "samples.jsonl")
    assert all(s.error is None and s.answer == REPLY and s.usage.calls == 1 for s in samples)
    assert card.sides["starter"].build.config["generator"] == "extractive"  # only the candidate was told generator=llm


def test_the_key_is_never_written_to_the_scorecard_the_logs_or_a_command_line(llm_graded):
    _, out, _ = llm_graded
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "candidate.log" for path in written)
    assert [path for path in written if SECRET in path.read_text(errors="replace")] == []
    started = [line for line in (out / "logs" / "candidate.log").read_text().splitlines() if " start candidate: " in line]
    assert started and all(SECRET not in line and "RAGKATA_GRADER_LLM_KEY" not in line for line in started)


def test_the_scorecard_names_the_model_endpoint_tokens_and_cost_for_each_side(llm_graded):
    card, out, server = llm_graded
    gen = card.generation
    host = server.url.split("/")[2]
    assert gen["generator"] == {"starter": "extractive", "candidate": "llm", "reference": "extractive"}
    assert gen["model"] == {"starter": None, "candidate": "interviewer-model", "reference": None}
    assert gen["endpoint"] == {"starter": None, "candidate": host, "reference": None}
    assert gen["tokens"]["prompt"]["candidate"] == {"p50": 120.0, "p95": 120.0}  # a cached reply keeps its tokens
    assert gen["tokens"]["completion"]["candidate"] == {"p50": 8.0, "p95": 8.0}
    assert gen["tokens"]["prompt"]["starter"] == {"p50": 0.0, "p95": 0.0}
    per_call = (120 * 1.0 + 8 * 2.0) / 1e6  # priced per million tokens
    assert gen["cost_usd"]["candidate"] == pytest.approx(6 * per_call)  # the 6 cache hits cost nothing
    assert gen["cost_per_question_usd"]["candidate"] == pytest.approx(6 * per_call / 12)
    assert (gen["llm_calls"]["candidate"], gen["llm_cache_hits"]["candidate"]) == (6, 6)
    assert gen["cost_usd"]["starter"] == 0.0 and gen["llm_calls"]["reference"] == 0
    assert card.sides["candidate"].build.config["llm_base_url"] == server.url
    md, html = (out / "scorecard.md").read_text(), (out / "scorecard.html").read_text()
    assert f"The candidate called `interviewer-model` at `{host}`." in md
    assert "| model | - | `interviewer-model` | - |" in md and f"| endpoint | - | `{host}` | - |" in md
    assert "| prompt tokens / question p50 / p95 | 0 / 0 | 120 / 120 | 0 / 0 |" in md
    assert f"| cost / question USD | 0 | {usd(6 * per_call / 12)} | 0 |" in md
    assert "| model calls (cache hits) | 0 (0) | 6 (6) | 0 (0) |" in md
    assert "4. Latency and cost" in md and "4. Latency and cost" in html
    assert f"candidate model <b>interviewer-model</b> at <code>{host}</code>" in html
    assert f"<code>{host}</code>" in html and usd(6 * per_call / 12) in html
    assert not any("/" in host for host in gen["endpoint"].values() if host)  # host:port, never the path
    evidence = {row["id"]: " ".join(row["evidence"]) for row in card.rubric}["latency_cost"]
    assert f"interviewer-model at {host}" in evidence and "cost per question USD" in evidence


def test_the_notes_give_the_longer_limit_the_cache_hits_and_the_model_the_candidate_used(llm_graded):
    card, out, server = llm_graded
    assert card.inputs["limits"]["timeout_s"] == 30.0 and card.inputs["limits"]["llm_timeout_s"] is None
    assert card.sides["candidate"].timeout_s == 30 + 3 * 60 + 3 and card.sides["starter"].timeout_s == 30.0
    assert card.inputs["llm"] == {"model": "interviewer-model", "endpoint": server.url.split("/")[2],
                                  "api_key_env": "GRADER_TEST_KEY", "api_key_set": True}
    notes = "\n".join(card.notes)
    assert "its per-question limit was 213 s, not 30 s, to leave room for generation" in notes
    assert "because --timeout was not given" in notes
    assert "6 of 12 answers came from the reply cache" in notes
    assert ("the candidate's own runs used smollm2-135m-instruct at 127.0.0.1:8081 (1 run(s), last 20261122T100500-nogit), "
            f"but they were graded with interviewer-model at {server.url.split('/')[2]}") in notes
    assert "grade again with --config llm_model" not in notes  # the endpoint is the interviewer's choice, not a knob
    assert "Limits: 30 s per question (candidate 213 s)" in (out / "scorecard.md").read_text()
    for name in ("scorecard.md", "scorecard.html"):
        assert "graded with interviewer-model" in (out / name).read_text()


@pytest.mark.parametrize("seconds, cached, line", [
    (0.4, True, "loaded from cache in 0.40 s"), (12.345, False, "built in 12.35 s"),
    (1.0, None, "built or loaded in 1.00 s"), (None, None, "-"),
])
def test_the_index_line_says_whether_it_was_built_or_loaded(seconds, cached, line):
    assert index_line(seconds, cached) == line


def test_the_build_is_reported_as_the_index_alone_and_the_whole_pipeline(broken):
    card, out, _ = broken
    starter = card.sides["starter"].build
    assert starter.config["retriever"] == "bm25"  # the Config the pipeline used: RAGKATA_RETRIEVER applied
    assert starter.index.chunks > 0 and starter.index.cached is False  # BM25 embeds nothing, so uses no cache
    assert 0 <= starter.index.build_seconds <= starter.index.pipeline_seconds
    assert card.latency["build_seconds"]["starter"] == starter.index.build_seconds
    assert card.latency["pipeline_seconds"]["starter"] == starter.index.pipeline_seconds
    assert card.latency["cached"]["starter"] is False
    candidate = card.sides["candidate"].build.index  # the broken fixture exposes a dict, not an IndexStats
    assert (candidate.chunks, candidate.build_seconds, candidate.cached) == (None, None, None)
    assert candidate.pipeline_seconds >= 0  # timed by the worker whatever the pipeline says
    assert f"built in {starter.index.build_seconds:.2f} s" in (out / "scorecard.md").read_text()
    assert f"built in {starter.index.build_seconds:.2f} s" in (out / "scorecard.html").read_text()


def test_build_times_are_set_side_by_side_only_like_with_like(broken):
    card, out, _ = broken
    lat = card.latency  # BM25 indexes use no cache (built cold); the broken candidate reports nothing
    assert lat["cached"] == {"starter": False, "candidate": None, "reference": False}
    assert lat["alike"] == {"starter": False, "reference": False}
    assert lat["build_note"] == "not comparable: starter built cold, candidate not reported, reference built cold"
    for name in ("scorecard.md", "scorecard.html"):
        assert "Build times are not comparable: starter built cold" in (out / name).read_text()
    index = next(line for row in card.rubric for line in row["evidence"] if line.startswith("index:"))
    assert "→" not in index and index.endswith(f"({lat['build_note']})")


def test_headline_values_show_their_n_and_a_small_holdout_is_not_judged(broken):
    card, out, _ = broken
    for row in card.headline["rows"]:
        assert {"metric", "dev", "holdout", "gap", "flagged", "n", "interval", "why"} <= set(row)
        n, missing = row["n"]["holdout"]["candidate"], row["dev"]["candidate"] is None  # the broken candidate: 6 questions
        why = "no value for candidate dev, candidate holdout" if missing else f"holdout n {n} < 20"
        assert n < 20 and (row["flagged"], row["interval"], row["why"]) == (None, None, why)
    accuracy = next(r for r in card.headline["rows"] if r["metric"] == m.ABSTENTION_ACCURACY)
    assert accuracy["n"]["dev"] == dict.fromkeys(("starter", "candidate", "reference"), len(QUESTIONS))
    html, md = (out / "scorecard.html").read_text(), (out / "scorecard.md").read_text()
    assert f'<small class="muted">n&nbsp;{len(QUESTIONS)}</small>' in html and "n/a: holdout n" in html
    assert "| metric | dev | n | holdout | n |" in md and f"n/a (holdout n {accuracy['n']['holdout']['candidate']} < 20)" in md
    assert "0.05" not in md.split("## 1. Headline")[1].split("## 2.")[0]  # the old fixed margin is gone


def test_failure_examples_prefer_questions_the_reference_answers_right(broken):
    card, out, _ = broken
    reference = {(split, s.id): s.failure for split in ("dev", "holdout")
                 for s in read_samples(out / "runs" / f"reference-{split}" / "samples.jsonl")}
    candidate = [(split, s) for split in ("dev", "holdout")
                 for s in read_samples(out / "runs" / f"candidate-{split}" / "samples.jsonl")]
    for label, examples in card.failures["examples"].items():
        misses = [ex["reference_misses"] for ex in examples]
        assert misses == sorted(misses), label  # the reference's right answers first
        assert misses == [reference[(ex["split"], ex["id"])] != "ok" for ex in examples]
        right = sum(s.failure == label and reference[(split, s.id)] == "ok" for split, s in candidate)
        assert misses.count(False) == min(right, 3), label  # one the reference misses only when too few it gets right
    assert any(card.failures["examples"].values())


SCORECARD_KEYS = ["version", "generated", "candidate", "inputs", "sides", "summaries", "headline", "per_tag", "failures",
                  "latency", "generation", "timeline", "changes", "tests", "notes", "alerts", "rubric", "ratings", "seconds",
                  "digest"]


def test_the_scorecard_round_trips_through_its_record(broken):
    card, out, _ = broken
    on_disk = json.loads((out / "scorecard.json").read_text())
    assert list(on_disk) == SCORECARD_KEYS  # other tools read these
    assert Scorecard.from_json(on_disk) == card
    assert Scorecard.from_json(card.to_json()) == card
    assert on_disk["summaries"]["candidate"]["dev"]["metrics"] == dict(card.summaries["candidate"]["dev"].metrics)
    assert on_disk["sides"]["starter"]["build"]["index"]["chunks"] == card.sides["starter"].build.index.chunks
    assert card.summaries["candidate"]["holdout"] is not None and set(card.summaries["candidate"]) == {"dev", "holdout", "all"}


def test_fold_ratings_reads_the_scorecard_back_through_its_record(broken, tmp_path):
    card, out, _ = broken
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    ratings = tmp_path / "ratings.json"
    ratings.write_text(json.dumps({"abstention": {"score": 4, "note": "swept the threshold"}}))
    folded = fold_ratings(copy, ratings)
    assert Scorecard.from_json(json.loads((copy / "scorecard.json").read_text())) == folded
    assert {r["id"]: (r["score"], r["note"]) for r in folded.rubric}["abstention"] == (4, "swept the threshold")
    assert folded.ratings == {"file": str(ratings), "rated": 1, "of": 9, "total": 4, "max": 4, "mean": 4.0}
    assert folded.digest != card.digest  # signed again, over the ratings too
    assert dataclasses.replace(folded, rubric=card.rubric, ratings=card.ratings, digest=card.digest) == card  # nothing else
    assert all(row["score"] is None for row in card.rubric)  # and the card it was read from is untouched


def test_fold_ratings_refuses_a_file_that_is_not_a_scorecard(tmp_path):
    (tmp_path / "scorecard.json").write_text(json.dumps({"version": 1, "rubric": []}))
    ratings = tmp_path / "ratings.json"
    ratings.write_text("{}")
    with pytest.raises(ValueError, match=r"scorecard.json: not a scorecard this grader can read \(ValueError: version 1"):
        fold_ratings(tmp_path, ratings)


def test_rubric_has_the_nine_criteria_with_levels_and_evidence(broken):
    card, out, _ = broken
    assert [row["id"] for row in card.rubric] == CRITERIA
    for row in card.rubric:
        assert list(row["levels"]) == ["1", "2", "3", "4"] and all(row["levels"].values())
        assert row["evidence"] and row["score"] is None
    evidence = {row["id"]: " ".join(row["evidence"]) for row in card.rubric}
    assert "retrieval_miss" in evidence["retrieval_vs_generation"] and "generation_miss" in evidence["retrieval_vs_generation"]
    assert "timed out" in evidence["code_quality"]
    assert json.loads((out / "ratings.template.json").read_text()) == {c: {"score": None, "note": ""} for c in CRITERIA}


def test_ratings_fold_back_into_all_three_files(broken, tmp_path):
    _, out, _ = broken
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    ratings = tmp_path / "ratings.json"
    ratings.write_text(json.dumps({"code_quality": {"score": 1, "note": "pipeline <raises> & hangs"},
                                   "measurement_discipline": {"score": 2, "note": ""}}))
    result = CliRunner().invoke(app, ["grade", "--out", str(copy), "--ratings", str(ratings), "--render-only"])
    assert result.exit_code == 0, result.output
    card = json.loads((copy / "scorecard.json").read_text())
    assert {r["id"]: r["score"] for r in card["rubric"]}["code_quality"] == 1
    assert card["ratings"]["rated"] == 2 and card["ratings"]["total"] == 3
    assert "pipeline <raises> & hangs" in (copy / "scorecard.md").read_text()
    html = (copy / "scorecard.html").read_text()
    assert "pipeline &lt;raises&gt; &amp; hangs" in html and "3 / 8" in html


@pytest.mark.parametrize("content, field", [
    ('{"code_quality": {"score": 5}}', "code_quality.score"),
    ('{"code_quality": {"score": true}}', "code_quality.score"),
    ('{"code_qualty": {"score": 3}}', "code_qualty"),
    ('{"abstention": {"score": 2, "notes": "x"}}', "abstention.notes"),
    ('{"abstention": {"score": 2, "note": 7}}', "abstention.note"),
    ('{"abstention": 3}', "abstention"),
    ('{"abstention": {"score": 2},}', "(file)"),
    ("[1, 2]", "(file)"),
])
def test_bad_ratings_are_refused_with_the_file_and_field(tmp_path, content, field):
    path = tmp_path / "ratings.json"
    path.write_text(content)
    with pytest.raises(rubric.RatingsError) as error:
        rubric.read_ratings(path)
    assert str(error.value).startswith(f"{path}: field '{field}':")


def test_bad_ratings_exit_2_from_the_cli_before_anything_runs(tmp_path, monkeypatch, capsys):
    path = tmp_path / "ratings.json"
    path.write_text('{"code_quality": {"score": 0}}')
    monkeypatch.setattr(sys, "argv", ["ragkata-grader", "grade", "--candidate", str(BROKEN), "--dev", str(GOLDEN),
                                      "--corpus", str(CORPUS), "--out", str(tmp_path / "out"), "--ratings", str(path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{path}: field 'code_quality.score': value 0 is not a whole number from 1 to 4" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def git(cwd: Path, *args: str, date: str | None = None) -> str:
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, env={**os.environ, **env}).stdout.strip()


def fake_run(runs: Path, stamp: str, commit: str, dirty: bool, recall: float, **config) -> None:
    folder = runs / f"{stamp}-{commit[:7]}"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"run_id": folder.name, "pipeline": "exercise", "golden": "golden_set/dev.jsonl",
                                                  "config": {"chunk_size": 800, **config}}))
    (folder / "summary.json").write_text(json.dumps({"metrics": {"evidence_recall@5": recall, "fact_recall": recall / 2},
                                                     "counts": {"questions": 10, "errors": 0}, "complete": True,
                                                     "git": {"commit": commit, "dirty": dirty}}))


def test_timeline_counts_runs_and_which_commits_were_measured(tmp_path):
    repo = make_candidate(tmp_path / "c")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ragkata exercise", date="2026-11-22T10:00:00+00:00")
    root = git(repo, "rev-parse", "HEAD")
    fake_run(repo / "runs", "20261122T100500", root, False, 0.40)
    fake_run(repo / "runs", "20261122T103000", root, True, 0.55, chunk_size=400)  # measured before committing
    (repo / "exercise" / "chunking.py").write_text("# structure-aware\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "structure-aware chunks", date="2026-11-22T10:35:00+00:00")
    (repo / "exercise" / "retrieval.py").write_text("# hybrid\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "hybrid, never measured", date="2026-11-22T11:00:00+00:00")
    (repo / "runs" / "latest").symlink_to("20261122T103000-" + root[:7])
    (repo / "runs" / "20261122T110500-nogit").mkdir()  # an interrupted run: spec only
    (repo / "runs" / "20261122T110500-nogit" / "spec.json").write_text("{not json")

    timeline = build_timeline(repo)
    assert [r["run_id"][:15] for r in timeline["runs"]] == ["20261122T100500", "20261122T103000", "20261122T110500"]
    second = timeline["runs"][1]
    assert second["config_changes"] == ["chunk_size 800 → 400"] and second["moved"]["evidence_recall@5"] == pytest.approx(0.15)
    d = timeline["discipline"]
    assert (d["runs"], d["complete_runs"], d["commits"], d["commits_measured"]) == (3, 2, 2, 1)
    assert d["unmeasured_commits"][0].endswith("hybrid, never measured")
    assert d["span_minutes"] == 60.0

    changes = what_changed(repo, INTERVIEWER_ROOT)
    assert changes["method"].startswith("git: working tree against the bundle commit")
    assert {f["path"] for f in changes["files"]} == {"exercise/chunking.py", "exercise/retrieval.py"}


def test_the_final_code_is_dated_by_its_commit_not_by_a_clones_file_times(tmp_path):
    """A clone's files are as new as the clone; only uncommitted edits are dated by their file times."""
    repo = make_candidate(tmp_path / "c")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "ragkata exercise", date="2026-11-22T10:00:00+00:00")
    (repo / "exercise" / "chunking.py").write_text("# structure-aware\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "structure-aware chunks", date="2026-11-22T10:35:00+00:00")
    fake_run(repo / "runs", "20261122T104000", git(repo, "rev-parse", "HEAD"), False, 0.5)
    clone = tmp_path / "clone"  # written now, long after the run
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    shutil.copytree(repo / "runs", clone / "runs")

    d = build_timeline(clone)["discipline"]
    assert d["last_edit"] == "2026-11-22T10:35:00+00:00" and d["final_state_measured"] is True
    (clone / "exercise" / "chunking.py").write_text("# edited after the last run\n")
    d = build_timeline(clone)["discipline"]
    assert d["final_state_measured"] is False and d["last_edit"] > "2026-12-01"


def test_without_git_changes_are_compared_file_by_file(tmp_path):
    repo = tmp_path / "c"
    shutil.copytree(INTERVIEWER_ROOT / "exercise", repo / "exercise", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "exercise" / "config.py").write_text((repo / "exercise" / "config.py").read_text().replace(
        "chunk_size: int = 800", "chunk_size: int = 400"))
    (repo / "exercise" / "rerank.py").write_text("def rerank():\n    pass\n")
    changes = what_changed(repo, INTERVIEWER_ROOT)
    files = {f["path"]: f for f in changes["files"]}
    assert files["exercise/config.py"]["status"] == "modified" and files["exercise/config.py"]["added"] == 1
    assert files["exercise/rerank.py"] == {**files["exercise/rerank.py"], "status": "added", "added": 2, "deleted": 0}
    assert build_timeline(repo)["discipline"]["git"] is False


def test_pytest_summary_lines_are_parsed():
    assert parse_pytest_summary("...\n1 failed, 40 passed, 2 skipped, 3 deselected in 4.10s\n") == \
        {"passed": 40, "failed": 1, "errors": 0, "skipped": 2, "deselected": 3}
    assert parse_pytest_summary("2 errors in 0.3s") == {"passed": 0, "failed": 0, "errors": 2, "skipped": 0}
    assert parse_pytest_summary("") == {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}


def test_the_candidates_own_tests_are_run_and_counted(tmp_path):
    repo = make_candidate(tmp_path / "c")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_mine.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2\n")
    with Jail.create(ISOLATION, repo, CORPUS) as jail:
        result = run_candidate_tests(jail, tmp_path / "tests.log", timeout_s=120)
    assert (result["passed"], result["failed"], result["ok"]) == (1, 1, False)
    assert "stopped at the first failure" in result["line"] and "first failure: assert 1 == 2" in result["line"]
    assert "assert 1 == 2" in (tmp_path / "tests.log").read_text()
    (tmp_path / "nowhere").mkdir()
    with Jail.create(ISOLATION, tmp_path / "nowhere", CORPUS) as jail:
        assert run_candidate_tests(jail, tmp_path / "x.log")["ran"] is False


def test_grade_cli_writes_the_files(tmp_path):
    candidate = make_candidate(tmp_path / "c", "raise SyntaxError('broken on purpose')\n")
    result = CliRunner().invoke(app, ["grade", "--candidate", str(candidate), "--dev", str(GOLDEN), "--corpus", str(CORPUS),
                                      "--out", str(tmp_path / "out"), "--reference", "exercise", "--timeout", "2",
                                      "--skip-tests", "--isolation", ISOLATION])
    assert result.exit_code == 0, result.output
    assert "failed at start-up: SyntaxError" in result.output and "scorecard.html" in result.output
    card = json.loads((tmp_path / "out" / "scorecard.json").read_text())
    assert card["inputs"]["holdout"] is None or card["inputs"]["holdout"]["path"].endswith("holdout.jsonl")


def dev_subset(tmp_path: Path, count: int) -> Path:
    dev = INTERVIEWER_ROOT / "golden_set" / "dev.jsonl"
    if not dev.is_file():
        pytest.skip("golden_set/dev.jsonl is not in this copy of the repository")
    path = tmp_path / "dev-subset.jsonl"
    path.write_text("\n".join(dev.read_text().splitlines()[:count]) + "\n")
    return path


@pytest.mark.slow
def test_grading_the_starter_on_the_real_corpus(tmp_path, monkeypatch):
    monkeypatch.delenv("RAGKATA_RETRIEVER")
    subset = dev_subset(tmp_path, 8)
    candidate = tmp_path / "starter"
    shutil.copytree(INTERVIEWER_ROOT / "exercise", candidate / "exercise", ignore=shutil.ignore_patterns("__pycache__"))
    reference = "grader.solutions" if (INTERVIEWER_ROOT / "grader" / "solutions" / "pipeline.py").is_file() else "exercise"
    card = grade(candidate, tmp_path / "out", subset, subset, INTERVIEWER_ROOT / "corpus", reference,
                 limits=Limits(timeout_s=60), run_tests=False, isolation=ISOLATION)
    assert all(card.sides[side].errors == 0 for side in ("starter", "candidate", "reference"))
    row = card.headline["rows"][0]
    assert row["dev"]["starter"] == pytest.approx(row["dev"]["candidate"])  # the same code scores the same
    index = card.sides["candidate"].build.index
    assert index.chunks > 0 and isinstance(index.cached, bool) and index.build_seconds <= index.pipeline_seconds
    how = "loaded from cache in" if index.cached else "built in"
    assert f"{how} {index.build_seconds:.2f} s" in (tmp_path / "out" / "scorecard.md").read_text()
    for name in ("scorecard.json", "scorecard.md", "scorecard.html"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_embedding_progress_from_a_building_worker_is_shown_never_trusted() -> None:
    from grader.worker import progress_sender

    sent: list[dict] = []
    forward = progress_sender(sent.append, every_s=3600)  # at most one line an hour, and always the last
    for done in (0, 16, 48, 100):
        forward(done, 100)
    assert sent == [{"event": "progress", "done": 0, "total": 100}, {"event": "progress", "done": 100, "total": 100}]

    class Worker:
        messages = [*sent, {"event": "progress", "done": "12", "total": 100}, {"event": "progress", "done": 7, "total": 3},
                    {"event": "progress", "done": True, "total": 5}, {"event": "ready", "config": {}, "index": {}}]

        def read(self, timeout_s: float) -> dict | None:
            return self.messages.pop(0) if self.messages else None

    shown: list[tuple[int, int]] = []
    ready = sandbox._until_ready(Worker(), 5.0, lambda done, total: shown.append((done, total)))
    assert ready == {"event": "ready", "config": {}, "index": {}} and shown == [(0, 100), (100, 100)]
    assert sandbox._until_ready(Worker(), 0.0, None) is None  # nothing but silence: the build timed out
