"""The run writer: record shapes, errors and time-outs recorded without stopping, resume after a crash,
--limit's stratified sample, --workers, and resume retrying errors."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import time
import types
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.golden import read_golden
from harness.records import RunSummary, Sample
from harness.runner import append_sample, new_run_id, read_samples, start_run
from harness.sampling import sample_order, stratified_sample, stratum_of

SAMPLE_KEYS = {"id", "question", "tags", "answerable", "retrieved", "context", "answer", "citations", "abstained",
               "latency_ms", "scores", "failure", "error", "usage", "context_chars"}


def golden_with(tmp_path: Path, fixture_golden: Path, *questions: str) -> Path:
    """The fixture golden file plus unanswerable questions with the given texts (RAISE, HANG, ...)."""
    lines = fixture_golden.read_text().splitlines()
    for n, text in enumerate(questions):
        lines.append(json.dumps({"id": f"extra-{n}", "question": text, "answerable": False, "answer": "",
                                 "facts": [], "evidence": [], "tags": ["unanswerable"]}))
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_all(run) -> RunSummary:
    for _ in run.questions():
        pass
    return run.finish()


def test_run_writes_samples_summary_and_latest(runs, fixture_corpus, fixture_golden, fake_pipeline_module):
    run = start_run(fixture_golden, fixture_corpus, pipeline=fake_pipeline_module)
    summary = run_all(run)
    samples = read_samples(run.directory / "samples.jsonl")
    assert [s.id for s in samples] == [f"fx-0{n}" for n in range(1, 7)]
    lines = [json.loads(line) for line in (run.directory / "samples.jsonl").read_text().splitlines()]
    assert all(set(line) == SAMPLE_KEYS for line in lines)
    assert all(set(r) == {"rank", "chunk_id", "doc_id", "text", "start", "end", "score"} for line in lines for r in line["retrieved"])
    assert [Sample.from_json(line) for line in lines] == samples
    assert set(samples[0].latency_ms) >= {"total"}
    on_disk = json.loads((run.directory / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary.to_json()))
    assert RunSummary.from_json(on_disk) == summary
    assert on_disk["index"]["chunks"] > 0 and on_disk["index"]["cached"] is False  # the fake's IndexStats
    for key in ("metrics", "config", "git", "corpus", "golden", "counts", "environment", "index", "peak_rss_mb"):
        assert key in on_disk, key
    assert on_disk["counts"]["questions"] == 6 and on_disk["counts"]["errors"] == 0
    assert on_disk["golden"]["path"] == str(fixture_golden) and len(on_disk["golden"]["sha256"]) == 64
    assert len(on_disk["corpus"]["sha256"]) == 64 and on_disk["environment"]["cpu_count"] >= 1
    assert set(on_disk["git"]) == {"commit", "dirty"}
    assert (runs / "latest").resolve() == run.directory.resolve()


def test_run_id_sorts_by_time_and_carries_the_commit():
    early = new_run_id("3fa9c1e0d2", datetime(2026, 11, 22, 9, 5, 1, tzinfo=timezone.utc))
    late = new_run_id("0000000aaa", datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc))
    assert early == "20261122T090501-3fa9c1e" and early < late
    assert re.fullmatch(r"\d{8}T\d{6}-nogit", new_run_id(None))


def test_a_raising_question_is_recorded_and_the_run_goes_on(runs, tmp_path, fixture_corpus, fixture_golden, fake_pipeline_module):
    golden = golden_with(tmp_path, fixture_golden, "please RAISE now", "What is cold-vault?")
    run = start_run(golden, fixture_corpus, pipeline=fake_pipeline_module)
    summary = run_all(run)
    samples = {s.id: s for s in read_samples(run.directory / "samples.jsonl")}
    assert samples["extra-0"].error == "RuntimeError: the fake pipeline was asked to fail"
    assert samples["extra-0"].failure == "error"
    assert samples["extra-0"].scores == {"abstention_accuracy": 0.0}  # scored as an empty answer, not skipped
    assert samples["extra-1"].error is None
    assert summary.summary.counts["errors"] == 1 and summary.summary.failures["error"] == 1


def test_a_hanging_question_times_out(runs, tmp_path, fixture_corpus, fixture_golden, fake_pipeline_module):
    golden = golden_with(tmp_path, fixture_golden, "HANG forever")
    run = start_run(golden, fixture_corpus, pipeline=fake_pipeline_module, timeout_s=0.3)
    run_all(run)
    hung = read_samples(run.directory / "samples.jsonl")[-1]
    assert hung.error.startswith("TimeoutError: no answer within 0.3 s")


def test_resume_finishes_an_interrupted_run(runs, fixture_corpus, fixture_golden, fake_pipeline_module):
    run = start_run(fixture_golden, fixture_corpus, pipeline=fake_pipeline_module)
    answered = run.questions()
    next(answered), next(answered)
    answered.close()  # the process "dies" after two questions
    samples_path = run.directory / "samples.jsonl"
    with samples_path.open("a") as f:
        f.write('{"id": "fx-03", "retrie')  # a torn line from a kill mid-write
    resumed = start_run(fixture_golden, resume=run.directory)
    assert [q.id for q in resumed.questions_todo] == ["fx-03", "fx-04", "fx-05", "fx-06"]
    summary = run_all(resumed)
    assert [s.id for s in read_samples(samples_path)] == [f"fx-0{n}" for n in range(1, 7)]
    assert summary.complete is True and summary.summary.counts["questions"] == 6


def test_resume_needs_a_run_folder(tmp_path, fixture_golden):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        start_run(fixture_golden, resume=tmp_path)


def test_the_summary_records_the_config_the_pipeline_used(runs, monkeypatch, fixture_corpus, fixture_golden):
    import dataclasses
    import sys
    import types

    from tests.conftest import FakePipeline

    module = types.ModuleType("own_defaults_pipeline")  # like the reference, it applies its own defaults
    module.build_pipeline = lambda config, documents: FakePipeline(dataclasses.replace(config, k_context=3), documents)
    monkeypatch.setitem(sys.modules, "own_defaults_pipeline", module)
    summary = run_all(start_run(fixture_golden, fixture_corpus, pipeline="own_defaults_pipeline"))
    assert summary.config["k_context"] == 3


# --- --limit: a stratified sample (harness/sampling.py) ------------------------------------------------------


def test_the_sample_order_of_the_fixture_worked_by_hand(fixture_golden):
    # Tag counts: numeric 3, exact-id 2, table 2, paraphrase 1, superseded 1, injection 1, unanswerable 1.
    # Rarest tag: fx-01 paraphrase; fx-02 exact-id; fx-03 table (2, numeric has 3); fx-04 superseded (1, tied
    # with injection; superseded comes first in TAGS); fx-05 exact-id (2, tied with table; exact-id comes
    # first); fx-06 unanswerable. Strata, largest first, then in TAGS order: exact-id {fx-02, fx-05},
    # paraphrase, superseded, table, unanswerable. Within exact-id, seed 0 draws by sha256("0:fx-02") =
    # b5566cd0.. < sha256("0:fx-05") = c53aa4be..: fx-02 first. Round one takes one per stratum, then fx-05.
    questions = read_golden(fixture_golden)
    assert [q.id for q in sample_order(questions)] == ["fx-02", "fx-01", "fx-04", "fx-03", "fx-06", "fx-05"]
    assert [q.id for q in stratified_sample(questions, 3)] == ["fx-01", "fx-02", "fx-04"]  # in golden-file order
    assert [q.id for q in stratified_sample(questions, 5)] == ["fx-01", "fx-02", "fx-03", "fx-04", "fx-06"]
    assert stratified_sample(questions, 99) == questions
    # seed 4: sha256("4:fx-05") = 76b6f795.. < sha256("4:fx-02") = 77f47d8d..: fx-05 is exact-id's first
    assert [q.id for q in stratified_sample(questions, 1, seed=4)] == ["fx-05"]
    assert [q.id for q in stratified_sample(list(reversed(questions)), 1, seed=4)] == ["fx-05"]  # file order aside
    with pytest.raises(ValueError, match="--limit must be at least 1, got 0"):
        stratified_sample(questions, 0)


def test_a_dev_sample_has_every_tag_once_then_grows_in_proportion():
    questions = read_golden(Path(__file__).parents[1] / "golden_set" / "dev.jsonl")
    tag_counts = Counter(tag for q in questions for tag in set(q.tags))
    sizes = Counter(stratum_of(q, tag_counts) for q in questions)
    assert sorted(q.id for q in sample_order(questions)) == sorted(q.id for q in questions)
    assert len({stratum_of(q, tag_counts) for q in stratified_sample(questions, len(sizes))}) == len(sizes)
    n, strata, total = 50, len(sizes), len(questions)
    taken = Counter(stratum_of(q, tag_counts) for q in stratified_sample(questions, n))
    for name, size in sizes.items():  # one each, the other n - strata in proportion to what is left
        assert abs(taken[name] - (1 + (n - strata) * (size - 1) / (total - strata))) < 1, name
    assert {q.id for q in stratified_sample(questions, 49)} < {q.id for q in stratified_sample(questions, 50)}


def test_a_limited_run_records_its_sample_and_resume_keeps_it(runs, tmp_path, fixture_corpus, fixture_golden,
                                                              fake_pipeline_module):
    golden = tmp_path / "golden.jsonl"
    golden.write_text(fixture_golden.read_text())
    run = start_run(golden, fixture_corpus, pipeline=fake_pipeline_module, limit=3)
    spec = json.loads((run.directory / "spec.json").read_text())
    assert (spec["limit"], spec["seed"], spec["question_ids"]) == (3, 0, ["fx-01", "fx-02", "fx-04"])
    answered = run.questions()
    next(answered)
    answered.close()  # the process "dies" after one question
    # the file gains a question that would change the tag counts and so a fresh sample; resume keeps the old one
    new = json.loads(fixture_golden.read_text().splitlines()[1]) | {"id": "fx-07", "tags": ["paraphrase"]}
    golden.write_text(golden.read_text() + json.dumps(new) + "\n")
    resumed = start_run(golden, resume=run.directory)
    assert [q.id for q in resumed.questions_todo] == ["fx-02", "fx-04"]
    summary = run_all(resumed)
    assert [s.id for s in read_samples(run.directory / "samples.jsonl")] == ["fx-01", "fx-02", "fx-04"]
    assert summary.summary.counts["questions"] == 3 and summary.extra["sample"] == {"limit": 3, "seed": 0}


# --- --workers: questions answered at once, written in question order --------------------------------------


def test_workers_answer_questions_at_the_same_time(runs, monkeypatch, fixture_corpus, fixture_golden):
    from tests.conftest import FakePipeline

    meeting = threading.Barrier(3, timeout=20)  # passes only when three answers are under way at once

    class Together(FakePipeline):
        def answer(self, question):
            meeting.wait()
            return super().answer(question)

    module = types.ModuleType("together_pipeline")
    module.build_pipeline = Together
    monkeypatch.setitem(sys.modules, "together_pipeline", module)
    run = start_run(fixture_golden, fixture_corpus, pipeline="together_pipeline", workers=3)
    summary = run_all(run)
    assert [s.id for s in read_samples(run.directory / "samples.jsonl")] == [f"fx-0{n}" for n in range(1, 7)]
    assert summary.summary.counts["errors"] == 0
    assert json.loads((run.directory / "spec.json").read_text())["workers"] == 3


def test_a_slow_question_holds_back_the_lines_after_it_but_not_their_answers(runs, tmp_path, fixture_corpus,
                                                                            fixture_golden, fake_pipeline_module):
    hang = {"id": "hang", "question": "HANG here", "answerable": False, "answer": "", "facts": [], "evidence": [],
            "tags": ["unanswerable"]}
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps(hang) + "\n" + fixture_golden.read_text())
    written: list[str] = []
    run = start_run(golden, fixture_corpus, pipeline=fake_pipeline_module, timeout_s=1.0, workers=2)
    for sample in run.questions(on_done=lambda s: written.append(s.id)):
        pass
    samples = read_samples(run.directory / "samples.jsonl")
    assert written == [s.id for s in samples] == ["hang"] + [f"fx-0{n}" for n in range(1, 7)]
    assert samples[0].error.startswith("TimeoutError: no answer within 1 s")  # the per-question limit holds
    assert all(s.error is None and s.latency_ms["total"] < 1000 for s in samples[1:])  # answered meanwhile


def test_warm_up_gets_every_question_once_before_any_is_timed(runs, monkeypatch, fixture_corpus, fixture_golden):
    from tests.conftest import FakePipeline

    events: list[str] = []

    class Slow(FakePipeline):
        def warm_up(self, questions):
            events.append(f"warm_up {len(questions)}")
            time.sleep(1.5)  # longer than the per-question limit: it must not count against any question

        def answer(self, question):
            events.append("answer")
            return super().answer(question)

    module = types.ModuleType("warm_pipeline")
    module.build_pipeline = Slow
    monkeypatch.setitem(sys.modules, "warm_pipeline", module)
    summary = run_all(start_run(fixture_golden, fixture_corpus, pipeline="warm_pipeline", timeout_s=1.0))
    assert events == ["warm_up 6"] + ["answer"] * 6
    assert summary.summary.counts["errors"] == 0


def test_workers_must_be_at_least_one(runs, fixture_golden):
    with pytest.raises(ValueError, match="--workers must be at least 1, got 0"):
        start_run(fixture_golden, workers=0)


# --- --resume retries errors --------------------------------------------------------------------------------


def test_read_samples_keeps_the_last_line_per_id_in_first_seen_order(tmp_path, runs, fixture_corpus, fixture_golden,
                                                                     fake_pipeline_module):
    run = start_run(fixture_golden, fixture_corpus, pipeline=fake_pipeline_module)
    first = list(run.questions())[:3]
    failed = dataclasses.replace(first[1], error="LLMError: server gone", answer="")
    path = tmp_path / "samples.jsonl"
    with path.open("w") as out:
        for sample in (first[0], failed, first[2], first[1]):
            append_sample(out, sample)
    assert read_samples(path) == [first[0], first[1], first[2]]


def test_resume_answers_again_the_questions_that_ended_in_an_error(runs, monkeypatch, fixture_corpus, fixture_golden):
    from tests.conftest import FakePipeline

    questions = {q.id: q.question for q in read_golden(fixture_golden)}
    down_for = {questions["fx-03"], questions["fx-04"]}  # the model server is down while these two are asked

    class NeedsAServer(FakePipeline):
        def answer(self, question):
            if question in down_for:
                raise ConnectionError("the model server is gone")
            return super().answer(question)

    module = types.ModuleType("server_pipeline")
    module.build_pipeline = NeedsAServer
    monkeypatch.setitem(sys.modules, "server_pipeline", module)
    run = start_run(fixture_golden, fixture_corpus, pipeline="server_pipeline")
    for _ in run.questions():
        pass
    first = run.finish()
    errors = [s.id for s in read_samples(run.directory / "samples.jsonl") if s.error]
    assert errors == ["fx-03", "fx-04"] and first.summary.counts["errors"] == 2 and first.complete

    down_for.clear()  # the server is back
    resumed = start_run(fixture_golden, resume=run.directory)
    assert [q.id for q in resumed.questions_todo] == ["fx-03", "fx-04"]
    summary = run_all(resumed)
    lines = (run.directory / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"fx-0{n}" for n in range(1, 7)] + ["fx-03", "fx-04"]
    samples = read_samples(run.directory / "samples.jsonl")
    assert [s.id for s in samples] == [f"fx-0{n}" for n in range(1, 7)] and not any(s.error for s in samples)
    assert summary.summary.counts == {**first.summary.counts, "errors": 0}
