"""`ragkata eval --config generator=llm` end to end against a real llama.cpp server with SmolLM2-135M.

Skipped without `make llm` (the reason names what is missing); under CI (env CI set) they fail instead.
Kept short: BM25 retrieval (nothing is embedded), 400-character chunks, two of them in context, 24
tokens per answer, five questions; each test has its own LLM cache under tmp_path. Also `ragkata llm
serve` itself: its URL, a taken port, Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.llm_server import free_port, port_in_use, start_server
from harness.runner import read_samples
from tests.conftest import require_local_model

ROOT = Path(__file__).resolve().parents[1]
PRICE_IN, PRICE_OUT = 0.5, 1.5  # USD per million tokens
LIMIT = 5
runner = CliRunner()


def eval_llm(url: str, cache_dir: Path, *extra: str):
    settings = ["generator=llm", "retriever=bm25", "chunk_size=400", "k_context=2", "llm_max_tokens=24",
                f"llm_price_in={PRICE_IN}", f"llm_price_out={PRICE_OUT}", f"llm_base_url={url}", f"cache_dir={cache_dir}"]
    args = ["eval", "--golden", str(ROOT / "golden_set" / "dev.jsonl"), "--corpus", str(ROOT / "corpus"),
            "--limit", str(LIMIT), "--timeout", "120", *[a for s in settings for a in ("--config", s)], *extra]
    return runner.invoke(app, args, catch_exceptions=False)


def run_folders(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.name != "latest")


def test_an_llm_run_end_to_end_then_wholly_from_the_cache(llama_server, runs, tmp_path):
    result = eval_llm(llama_server, tmp_path / "cache")
    assert result.exit_code == 0, result.output
    (run,) = run_folders(runs)
    samples = read_samples(run / "samples.jsonl")
    assert len(samples) == LIMIT and all(s.error is None for s in samples), [s.error for s in samples]
    for s in samples:
        assert s.answer.strip()  # a 135M model's answer may be poor; it is there, and parsed
        assert all(c in s.context or re.fullmatch(r"\[\d+\]", c) for c in s.citations), (s.citations, s.context)
        assert not (s.abstained and s.citations)
        usage = s.usage
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0 and usage.calls == 1 and not usage.cached
        assert usage.cost_usd == pytest.approx((usage.prompt_tokens * PRICE_IN + usage.completion_tokens * PRICE_OUT) / 1e6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["tokens"]["prompt"]["sum"] == sum(s.usage.prompt_tokens for s in samples) > 0
    assert summary["cost_usd"]["sum"] == pytest.approx(sum(s.usage.cost_usd for s in samples)) and summary["cost_usd"]["sum"] > 0
    assert (summary["llm_calls"], summary["llm_cache_hits"], summary["counts"]["errors"]) == (LIMIT, 0, 0)
    assert json.loads((run / "spec.json").read_text())["question_ids"] == [s.id for s in samples]

    again = eval_llm(llama_server, tmp_path / "cache")
    assert again.exit_code == 0, again.output
    second = run_folders(runs)[-1]
    cached = json.loads((second / "summary.json").read_text())
    assert (cached["llm_calls"], cached["llm_cache_hits"], cached["cost_usd"]["sum"]) == (0, LIMIT, 0.0)
    assert [(s.id, s.answer, s.citations) for s in read_samples(second / "samples.jsonl")] == [
        (s.id, s.answer, s.citations) for s in samples]


def test_a_server_killed_mid_run_leaves_errors_then_resume_finishes_the_run(runs, tmp_path):
    require_local_model()
    port = free_port()
    server = start_server(port, log_path=tmp_path / "server.log")
    killed = threading.Event()

    def kill_after_two_answers() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.is_set():
            lines = list(runs.glob("*/samples.jsonl"))
            if lines and len(lines[0].read_text().splitlines()) >= 2:
                server.process.kill()  # the server dies; the questions after it cannot be answered
                killed.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_after_two_answers, daemon=True)
    watcher.start()
    try:
        result = eval_llm(server.base_url, tmp_path / "cache")
        killed.set()
        assert result.exit_code == 0, result.output  # the run went on to the end
        (run,) = run_folders(runs)
        samples = read_samples(run / "samples.jsonl")
        failed = [s for s in samples if s.error]
        assert len(samples) == LIMIT and samples[0].error is None and samples[1].error is None
        assert failed and all(s.error.startswith("LLMError: ") and str(port) in s.error for s in failed), \
            [s.error for s in samples]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["complete"] is True and summary["counts"]["errors"] == len(failed)
    finally:
        killed.set()
        server.stop()

    with start_server(port, log_path=tmp_path / "server-again.log"):
        resumed = runner.invoke(app, ["eval", "--resume", str(run)], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    lines = (run / "samples.jsonl").read_text().splitlines()
    assert len(lines) == LIMIT + len(failed)  # the errors stay on disk, superseded by the new lines
    samples_after = read_samples(run / "samples.jsonl")
    assert [s.id for s in samples_after] == [s.id for s in samples] and not any(s.error for s in samples_after)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["errors"] == 0 and summary["llm_calls"] == LIMIT  # no answer came from the cache


def test_ragkata_llm_serve_prints_its_url_refuses_a_taken_port_and_stops_on_ctrl_c(tmp_path):
    require_local_model()
    port = free_port()
    env = {**os.environ, "RAGKATA_CACHE_DIR": str(tmp_path)}  # the server's log goes there
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "llm", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        first_line = process.stdout.readline()  # printed once the server answers
        assert f"at http://127.0.0.1:{port}/v1 " in first_line, (first_line, process.stderr.read())
        assert (tmp_path / f"llm-server-{port}.log").is_file()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as response:
            assert [m["id"] for m in json.load(response)["data"]] == ["smollm2-135m-instruct"]  # Config's llm_model
        taken = runner.invoke(app, ["llm", "serve", "--port", str(port)])
        assert taken.exit_code == 2 and f"port {port} on 127.0.0.1 is taken" in taken.stderr
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not port_in_use(port)  # the llama.cpp server went with it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
