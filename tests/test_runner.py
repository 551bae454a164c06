"""The run writer: record shapes, errors and time-outs recorded without stopping, resume after a crash."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.records import RunSummary, Sample
from harness.runner import new_run_id, read_samples, start_run

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
