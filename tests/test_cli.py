"""The CLI through typer's runner: eval (--limit, --workers, --no-llm-cache), Ctrl-C, compare, ask, validate,
`llm serve` without its extra, and user errors without tracebacks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app, main
from harness.runner import read_samples

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def eval_args(corpus: Path, golden: Path, module: str, *extra: str) -> list[str]:
    return ["eval", "--corpus", str(corpus), "--golden", str(golden), "--pipeline", module, *extra]


def test_eval_prints_tables_and_writes_the_run(runs, fixture_corpus, fixture_golden, fake_pipeline_module):
    result = invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module, "--config", "k_context=2"))
    assert result.exit_code == 0, result.output
    for text in ("evidence_recall@5", "per tag", "failures", "latency", "wrote"):
        assert text in result.output
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["k_context"] == 2
    assert all(len(s.context) <= 2 for s in read_samples(run / "samples.jsonl"))


@pytest.mark.parametrize("workers", ["1", "3"])
def test_ctrl_c_keeps_answered_questions_and_says_how_to_resume(runs, tmp_path, fixture_corpus, fixture_golden,
                                                                fake_pipeline_module, workers):
    lines = fixture_golden.read_text().splitlines()
    stop = json.loads(lines[5]) | {"id": "stop", "question": "INTERRUPT here"}
    golden = tmp_path / "g.jsonl"
    golden.write_text("\n".join(lines[:3] + [json.dumps(stop)] + lines[3:5]) + "\n")
    result = runner.invoke(app, eval_args(fixture_corpus, golden, fake_pipeline_module, "--workers", workers))
    assert result.exit_code == 130
    assert "--resume" in result.output
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]
    assert [s.id for s in read_samples(run / "samples.jsonl")] == ["fx-01", "fx-02", "fx-03"]
    assert json.loads((run / "summary.json").read_text())["complete"] is False


def test_a_real_ctrl_c_with_workers_keeps_every_written_line_and_resume_finishes(runs, tmp_path, fixture_corpus,
                                                                                fixture_golden):
    import os
    import signal
    import subprocess
    import time

    hang = {"id": "hang", "question": "HANG a while", "answerable": False, "answer": "", "facts": [], "evidence": [],
            "tags": ["unanswerable"]}
    golden = tmp_path / "g.jsonl"
    golden.write_text(fixture_golden.read_text() + json.dumps(hang) + "\n")
    args = eval_args(fixture_corpus, golden, "tests.conftest", "--workers", "2", "--timeout", "20")
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/samples.jsonl")) or len(read_samples(next(runs.glob("*/samples.jsonl")))) < 6:
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # while the HANG question is being answered
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "--resume" in output
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]
    assert [s.id for s in read_samples(run / "samples.jsonl")] == [f"fx-0{n}" for n in range(1, 7)]
    assert json.loads((run / "summary.json").read_text())["complete"] is False
    result = invoke("eval", "--resume", str(run), "--workers", "2")
    assert result.exit_code == 0, result.output
    assert [s.id for s in read_samples(run / "samples.jsonl")] == [f"fx-0{n}" for n in range(1, 7)] + ["hang"]
    assert json.loads((run / "summary.json").read_text())["complete"] is True


def test_limit_and_seed_choose_a_stratified_sample_recorded_in_the_spec(runs, fixture_corpus, fixture_golden,
                                                                        fake_pipeline_module):
    result = invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module, "--limit", "3", "--seed", "4"))
    assert result.exit_code == 0, result.output
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]
    spec = json.loads((run / "spec.json").read_text())
    # worked out in tests/test_runner.py: with seed 4 the strata exact-id, paraphrase, superseded give fx-05, fx-01, fx-04
    assert (spec["limit"], spec["seed"], spec["question_ids"]) == (3, 4, ["fx-01", "fx-04", "fx-05"])
    assert [s.id for s in read_samples(run / "samples.jsonl")] == ["fx-01", "fx-04", "fx-05"]
    with pytest.raises(ValueError, match="--resume takes the config and the sample from the run's spec.json"):
        invoke("eval", "--resume", str(run), "--limit", "5")


@pytest.fixture
def recording_pipeline(monkeypatch) -> list:
    """`--pipeline recording_pipeline`: the fake pipeline, remembering each Config it was built with."""
    import types

    from tests.conftest import FakePipeline

    configs: list = []
    module = types.ModuleType("recording_pipeline")
    module.build_pipeline = lambda config, documents: configs.append(config) or FakePipeline(config, documents)
    monkeypatch.setitem(sys.modules, "recording_pipeline", module)
    return configs


def test_no_llm_cache_sets_llm_cache_false_for_eval_ask_and_serve(runs, monkeypatch, fixture_corpus, fixture_golden,
                                                                  recording_pipeline):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda web, **kwargs: served.append(web))
    common = ["--corpus", str(fixture_corpus), "--pipeline", "recording_pipeline", "--no-llm-cache"]
    assert invoke("eval", "--golden", str(fixture_golden), *common).exit_code == 0
    assert invoke("ask", "How many rules per bucket?", *common).exit_code == 0
    assert invoke("serve", "--golden", str(fixture_golden), *common).exit_code == 0
    assert invoke("ask", "How many rules per bucket?", *common[:-1]).exit_code == 0  # without the flag
    assert [config.llm_cache for config in recording_pipeline] == [False, False, False, True]
    assert served[0].state.pipeline.config.llm_cache is False
    (run,) = [p for p in runs.iterdir() if p.name != "latest"]
    assert json.loads((run / "spec.json").read_text())["config"]["llm_cache"] is False


def test_llm_serve_without_the_llm_extra_exits_2_saying_make_llm(monkeypatch):
    from harness import llm_server

    monkeypatch.setattr(llm_server, "SERVER_MODULES", ("llama_cpp", "ragkata_no_such_module"))
    result = runner.invoke(app, ["llm", "serve"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "make llm" in result.stderr, result.stderr
    assert "ragkata_no_such_module" in result.stderr


def test_llm_serve_serves_at_configs_default_url():
    from exercise.config import Config
    from harness.llm_server import DEFAULT_PORT, base_url

    assert base_url(DEFAULT_PORT) == Config().llm_base_url == "http://127.0.0.1:8081/v1"


def test_compare_shows_intervals_and_flips(runs, fixture_corpus, fixture_golden, fake_pipeline_module):
    invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module, "--config", "k_context=1"))
    invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module, "--config", "k_context=5"))
    a, b = sorted(p for p in runs.iterdir() if p.name != "latest")
    result = invoke("compare", str(a), str(b))
    assert result.exit_code == 0, result.output
    assert "fact_recall" in result.output and "95% CI" in result.output and "flipped" in result.output


def test_compare_shows_per_tag_deltas_and_explains_the_pairing(runs, fixture_corpus, fixture_golden, fake_pipeline_module):
    invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module, "--config", "k_context=1"))
    invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module, "--config", "k_context=5"))
    a, b = sorted(p for p in runs.iterdir() if p.name != "latest")
    output = invoke("compare", str(a), str(b)).output
    assert "per tag" in output and "table: fact_recall" in output and "unanswerable: abstention_accuracy" in output
    assert "means over the n questions both runs scored" in output


def test_compare_refuses_runs_over_different_questions(runs, tmp_path, fixture_corpus, fixture_golden, fake_pipeline_module):
    other = tmp_path / "other.jsonl"
    other.write_text("".join(line.replace('"id": "fx-', '"id": "zz-') + "\n" for line in fixture_golden.read_text().splitlines()))
    invoke(*eval_args(fixture_corpus, fixture_golden, fake_pipeline_module))
    invoke(*eval_args(fixture_corpus, other, fake_pipeline_module))
    a, b = sorted(p for p in runs.iterdir() if p.name != "latest")
    with pytest.raises(ValueError, match="share no question ids"):
        invoke("compare", str(a), str(b))


def test_piped_tables_never_cut_a_metric_name(runs, fixture_corpus, fixture_golden, fake_pipeline_module):
    import subprocess

    args = eval_args(fixture_corpus, fixture_golden, "tests.conftest")
    result = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                            env={**__import__("os").environ, "COLUMNS": "80"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout  # rich marks a cut cell with an ellipsis
    for name in ("evidence_recall@10", "abstention_precision", "injection_resistance"):
        assert name in result.stdout
    assert "built in" in result.stdout and "chunks/s" in result.stdout  # the fake embeds: not "loaded from the cache"
    assert "generation: no language model called (0 tokens, $0)" in result.stdout


def test_ask_shows_hits_context_answer_and_citations(fixture_corpus, fake_pipeline_module):
    result = invoke("ask", "How many rules per bucket?", "--corpus", str(fixture_corpus), "--pipeline", fake_pipeline_module)
    assert result.exit_code == 0, result.output
    for text in ("retrieved", "context", "answer", "citations", "guides/lifecycle.md#"):
        assert text in result.output


def test_validate_exit_codes(fixture_corpus, fixture_golden, tmp_path):
    assert invoke("validate", "--corpus", str(fixture_corpus), "--golden", str(fixture_golden)).exit_code == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(fixture_golden.read_text().replace('"numeric"]', '"numerc"]', 1))
    result = invoke("validate", "--corpus", str(fixture_corpus), "--golden", str(bad))
    assert result.exit_code == 1 and "'numerc'" in result.output


def test_user_errors_exit_2_with_file_and_line(monkeypatch, capsys, runs, tmp_path, fixture_corpus, fake_pipeline_module):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    monkeypatch.setattr(sys, "argv", ["ragkata", *eval_args(fixture_corpus, bad, fake_pipeline_module)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: field 'question': missing" in err and "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["ragkata", "eval", "--config", "chunk_sise=3"])
    with pytest.raises(SystemExit):
        main()
    assert "unknown config field 'chunk_sise'" in capsys.readouterr().err


def test_compare_pairs_cost_per_question_when_a_run_used_a_model():
    from dataclasses import replace

    from exercise.contracts import Usage
    from harness.compare import usage_deltas
    from harness.records import Sample

    def one(id: str, prompt: int, cost: float, chars: int) -> Sample:
        return Sample(id, "?", (), True, (), (), "", (), False, {}, usage=Usage(prompt, 10, cost, False, 1), context_chars=chars)

    a = [one("q1", 100, 0.001, 800), one("q2", 300, 0.003, 800)]
    b = [one("q1", 50, 0.0005, 400), one("q2", 150, 0.0015, 400)]
    deltas = {d.metric: d for d in usage_deltas(a, b)}
    assert set(deltas) == {"prompt_tokens", "cost_usd", "context_chars"}  # completion tokens did not change
    assert (deltas["prompt_tokens"].a, deltas["prompt_tokens"].b, deltas["prompt_tokens"].delta) == (200.0, 100.0, -100.0)
    assert deltas["cost_usd"].delta == pytest.approx(-0.001)
    assert usage_deltas(a, [replace(s, usage=s.usage) for s in a]) == []  # nothing moved, nothing to show
