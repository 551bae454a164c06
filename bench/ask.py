"""Time `ragkata ask` as a candidate runs it: the first call (which starts the warm process), then N more
questions, each a fresh `python -m harness.cli ask` with its output piped. Optionally a few `--cold` asks in
the same run, for the before figure. Prints JSON: first-call seconds, p50/p95/max of the warm calls, the cold
calls' seconds, and whether every warm answer matched a cold one where both ran.

--uncached (the default) makes every question distinct (a per-run nonce appended), so no ask finds its query
vector in the embedding cache and each one encodes, as a new question does; --repeated asks the dev questions
as they are. A warm ask that had to start a new process (an edit landed mid-run) is counted in "restarts".

Usage: python bench/ask.py [--questions 10] [--cold 2] [--repeated] [--pipeline exercise] [--config name=value ...]
Stops the warm processes of this folder before (so the first call is a first call) and after. Left out on
purpose: pass/fail thresholds; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = ["How long until objects move to cold-vault?", "What does error KOS-4032 mean?"]


def questions_from(golden: Path) -> list[str]:
    if not golden.is_file():
        return FALLBACK
    return [json.loads(line)["question"] for line in golden.read_text(encoding="utf-8").splitlines() if line.strip()]


def ask(question: str, common: list[str], *extra: str) -> tuple[float, str, bool]:
    command = [sys.executable, "-m", "harness.cli", "ask", question, *common, *extra]
    env = {**os.environ, "RAGKATA_WARM": "1", "COLUMNS": "120"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ask exited {done.returncode}: {done.stderr[-2000:]}")
    return took, done.stdout, "started a warm ragkata process" in done.stderr


def without_latency(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if not line.startswith("latency ms:"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="exercise")
    parser.add_argument("--corpus", default="corpus")
    parser.add_argument("--golden", type=Path, default=ROOT / "golden_set" / "dev.jsonl")
    parser.add_argument("--config", action="append", default=[], help="name=value; repeatable")
    parser.add_argument("--questions", type=int, default=10, help="warm asks after the first")
    parser.add_argument("--cold", type=int, default=1, help="`ask --cold` calls to time for comparison")
    parser.add_argument("--repeated", action="store_true", help="ask the dev questions as they are (their "
                        "vectors may be cached) instead of distinct ones")
    args = parser.parse_args()
    common = ["--pipeline", args.pipeline, "--corpus", args.corpus]
    for pair in args.config:
        common += ["--config", pair]
    questions = questions_from(args.golden)
    if not args.repeated:
        nonce = uuid.uuid4().hex[:8]
        questions = [f"{q} (bench {nonce} #{i})" for i, q in enumerate(questions)]
    stop = [sys.executable, "-m", "harness.cli", "ask", "--stop", *common]
    subprocess.run(stop, cwd=ROOT, capture_output=True, timeout=120)
    try:
        first, first_out, _ = ask(questions[0], common)
        warm, restarts = [], 0
        for i in range(1, args.questions + 1):
            took, _, restarted = ask(questions[i % len(questions)], common)
            warm.append(took)
            restarts += restarted
            print(f"warm ask {i}: {took:.2f} s{' (started a new process)' if restarted else ''}", file=sys.stderr)
        cold, same = [], []
        for i in range(args.cold):
            # a question never asked (so a cold ask loads the model to encode it), then the same one warm
            question = f"{questions[(i % len(questions))]} (cold {i})"
            took, out, _ = ask(question, common, "--cold")
            cold.append(took)
            print(f"cold ask {i + 1}: {took:.2f} s", file=sys.stderr)
            same.append(without_latency(out) == without_latency(ask(question, common)[1]))
    finally:
        subprocess.run(stop, cwd=ROOT, capture_output=True, timeout=120)
    report = {"pipeline": args.pipeline, "config": args.config, "cpu_count": os.cpu_count(),
              "uncached": not args.repeated, "first_call_s": round(first, 2), "warm_calls": len(warm),
              "restarts": restarts,
              "warm_p50_s": round(statistics.median(warm), 2) if warm else None,
              "warm_p95_s": round(percentile(warm, 95), 2) if warm else None,
              "warm_max_s": round(max(warm), 2) if warm else None,
              "warm_s": [round(t, 2) for t in warm], "cold_s": [round(t, 2) for t in cold],
              "warm_output_equals_cold": all(same) if same else None, "load_average": os.getloadavg()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
