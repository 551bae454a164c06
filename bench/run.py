"""Measure what the set-up and the baseline cost: first and second `make eval` on a fresh clone, retrieval
latency percentiles, index build speed and peak memory. Prints a JSON report and the medians.

Usage: python bench/run.py [--repeats 3] [--pipeline exercise]
Left out on purpose: pass/fail thresholds. These machines are shared and noisy; report medians and
ratios, and keep timing out of the test suite.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def latest_summary(clone: Path) -> dict:
    return json.loads((clone / "runs" / "latest" / "summary.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm `make eval` runs after the first")
    parser.add_argument("--pipeline", default="exercise")
    args = parser.parse_args()
    env = {**os.environ, "ARGS": f"--pipeline {args.pipeline}"}
    with tempfile.TemporaryDirectory(prefix="ragkata-bench-") as tmp:
        clone = Path(tmp) / "ragkata"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        first = timed(["make", "eval"], clone, env)
        cold = latest_summary(clone)
        warm_times, warm = [], []
        for _ in range(args.repeats):
            warm_times.append(timed(["make", "eval"], clone, env))
            warm.append(latest_summary(clone))
    retrieve_p50 = [s["latency_ms"]["retrieve"]["p50"] for s in warm if "retrieve" in s["latency_ms"]]
    retrieve_p95 = [s["latency_ms"]["retrieve"]["p95"] for s in warm if "retrieve" in s["latency_ms"]]
    report = {
        "pipeline": args.pipeline,
        "questions": cold["counts"]["questions"],
        "first_make_eval_s": round(first, 1),
        "warm_make_eval_s": [round(t, 1) for t in warm_times],
        "warm_make_eval_median_s": round(statistics.median(warm_times), 1),
        "index_first": cold["index"],
        "index_warm": warm[-1]["index"],
        "retrieve_p50_ms_median": round(statistics.median(retrieve_p50), 2) if retrieve_p50 else None,
        "retrieve_p95_ms_median": round(statistics.median(retrieve_p95), 2) if retrieve_p95 else None,
        "total_p50_ms_median": round(statistics.median(s["latency_ms"]["total"]["p50"] for s in warm), 2),
        "peak_rss_mb_first": cold["peak_rss_mb"],
        "peak_rss_mb_warm_median": statistics.median(s["peak_rss_mb"] for s in warm),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
