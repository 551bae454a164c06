"""Measure the local language model on this machine: llama.cpp's server with SmolLM2-135M behind
`--config generator=llm`. Starts the server itself and prints a small table of medians.

Usage: python bench/llm.py [--limit 50] [--probes 10] [--reference PACKAGE]
Measured: the server's prompt and generation tokens per second (timed from the client, over --probes
of the run's own prompts); seconds per question at k_context 5; the --limit run cold (an empty reply
cache) and again cached; fact_recall, citation_precision and grounded_values (when the harness scores
it) of the local model beside the extractive starter, and beside the pipeline package --reference names
(any --pipeline value), on the same questions. Everything is written to a temporary folder, except that
the runs without a model share the repository's embedding cache. Left out on purpose: pass/fail
thresholds (shared, noisy machines), bigger models, and more than one worker (llama.cpp's server
answers one request at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exercise.config import Config  # noqa: E402
from exercise.embedding_cache import FILENAME as EMBEDDINGS_FILE  # noqa: E402
from exercise.llm import PROMPT_PATH, render_prompt  # noqa: E402
from harness.llm_server import free_port, start_server, unavailable  # noqa: E402
from harness.records import Sample  # noqa: E402
from harness.runner import read_samples  # noqa: E402

METRICS = ("fact_recall", "citation_precision", "grounded_values")
K_CONTEXT = 5


@dataclass
class Run:
    label: str
    seconds: float  # wall time of the whole `ragkata eval`, start-up included
    summary: dict
    samples: list[Sample]


def evaluate(label: str, runs: Path, log: Path, *args: str) -> Run:
    """One `ragkata eval` in a subprocess; its summary and samples."""
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "eval", *args], cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, "RAGKATA_RUNS_DIR": str(runs)})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{label}: ragkata eval exited with {done.returncode}; the end of {log}:\n{log.read_text()[-3000:]}")
    folder = (runs / "latest").resolve()
    return Run(label, seconds, json.loads((folder / "summary.json").read_text()), read_samples(folder / "samples.jsonl"))


def cache_sharing_embeddings(folder: Path, config: Config) -> Path:
    """A fresh cache folder (so the reply cache starts empty) that links the repository's embedding cache.

    SQLite follows the link, so its -wal and -shm files stay beside the shared database.
    """
    folder.mkdir(parents=True)
    shared = ROOT / config.cache_dir if not Path(config.cache_dir).is_absolute() else Path(config.cache_dir)
    database = shared / EMBEDDINGS_FILE
    database.parent.mkdir(parents=True, exist_ok=True)
    database.touch()  # an empty file is an empty database: the link has something to point at
    (folder / EMBEDDINGS_FILE).symlink_to(database)
    return folder


def probe(client, prompt: str) -> tuple[float | None, float | None]:
    """(prompt tokens/s, generation tokens/s) for one prompt.

    Prompt: a one-token reply to the prompt behind a unique system line (so no earlier request's prefix is
    reused), prompt tokens over the request's time. Generation: the same messages streamed, tokens after
    the first over the time from the first to the last (the prompt is behind us by then).
    """
    messages = [{"role": "system", "content": f"Request {uuid.uuid4().hex}."}, {"role": "user", "content": prompt}]
    started = time.perf_counter()
    reply = client.chat.completions.create(model="local", messages=messages, max_tokens=1, temperature=0.0)
    prompt_rate = reply.usage.prompt_tokens / (time.perf_counter() - started) if reply.usage else None
    stamps = []
    for event in client.chat.completions.create(model="local", messages=messages, max_tokens=128, temperature=0.0,
                                                stream=True):
        if event.choices and event.choices[0].delta.content:
            stamps.append(time.perf_counter())
    generation_rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) >= 8 else None
    return prompt_rate, generation_rate


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50, help="questions per run (a stratified sample of dev)")
    parser.add_argument("--probes", type=int, default=10, help="prompts timed for the server's tokens per second")
    parser.add_argument("--golden", default="golden_set/dev.jsonl")
    parser.add_argument("--reference", help="another pipeline package to score on the same questions")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    import openai

    load_before = os.getloadavg()[0]
    common = ["--golden", args.golden, "--limit", str(args.limit)]
    with tempfile.TemporaryDirectory(prefix="ragkata-bench-llm-") as tmp:
        tmp_path, runs, log = Path(tmp), Path(tmp) / "runs", Path(tmp) / "eval.log"
        cache = cache_sharing_embeddings(tmp_path / "cache", Config().with_environment())
        with start_server(free_port(), log_path=tmp_path / "server.log") as server:
            llm = [*common, "--timeout", "600", "--config", "generator=llm", "--config", f"k_context={K_CONTEXT}",
                   "--config", f"llm_base_url={server.base_url}", "--config", f"cache_dir={cache}"]
            print(f"local model {server.model.name} at {server.base_url}; {args.limit} questions cold ...", flush=True)
            cold = evaluate("exercise + llm, cold", runs, log, *llm)
            cached = evaluate("exercise + llm, cached", runs, log, *llm)
            print(f"timing the server on {args.probes} of the run's prompts ...", flush=True)
            template = PROMPT_PATH.read_text(encoding="utf-8")
            client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", timeout=600, max_retries=0)
            prompts = [render_prompt(template, s.question, s.context_chunks) for s in cold.samples if s.context]
            rates = [probe(client, prompt) for prompt in prompts[: args.probes]]
        print("the extractive pipelines on the same questions ...", flush=True)
        extractive = [evaluate("exercise, extractive (starter)", runs, log, *common)]
        if args.reference:
            extractive.append(evaluate(f"{args.reference} (reference)", runs, log, *common, "--pipeline", args.reference))
    load_after = os.getloadavg()[0]
    ids = [s.id for s in cold.samples]
    if any([s.id for s in run.samples] != ids for run in extractive):
        sys.exit("the runs answered different questions; --limit should give each the same sample")

    def p50_s(run: Run) -> float:
        return run.summary["latency_ms"]["total"]["p50"] / 1000

    print()
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before and {load_after:.1f} after; "
          f"{len(ids)} questions of {args.golden}")
    print(f"server throughput, median of {len(rates)} prompts: prompt {fmt(median(r[0] for r in rates), 0)} tokens/s, "
          f"generation {fmt(median(r[1] for r in rates), 0)} tokens/s")
    print()
    print(f"{'run':<32} {'wall s':>8} {'s/question p50':>15} {'llm calls':>10} {'cache hits':>11} "
          f"{'prompt tok p50':>15} {'reply tok p50':>14}")
    for run in (cold, cached):
        s, tokens = run.summary, run.summary["tokens"]
        print(f"{run.label:<32} {run.seconds:>8.1f} {p50_s(run):>15.2f} {s['llm_calls']:>10} {s['llm_cache_hits']:>11} "
              f"{tokens['prompt']['p50']:>15.0f} {tokens['completion']['p50']:>14.0f}")
    print()
    shown = [m for m in METRICS if any(m in r.summary["metrics"] for r in (cold, *extractive))]
    skipped = [m for m in METRICS if m not in shown]
    print(f"{'pipeline':<32} " + " ".join(f"{m:>18}" for m in shown) + f" {'errors':>7}")
    for run in (cold, *extractive):
        label = "exercise + llm (SmolLM2-135M)" if run is cold else run.label
        print(f"{label:<32} " + " ".join(f"{fmt(run.summary['metrics'].get(m)):>18}" for m in shown)
              + f" {run.summary['counts']['errors']:>7}")
    if skipped:
        print(f"(not scored by this harness yet: {', '.join(skipped)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
