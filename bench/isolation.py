"""What the candidate's jail costs, and what it holds: a grade's wall time jailed against unconfined, and the
hostile fixture's attacks as it reported them from inside the jail.

1. Wall time: the starter, copied as a candidate, graded on the first --questions dev questions with warm
   caches (a first grade warms them and is not counted), --repeats times with --isolation bwrap and with
   --isolation none, alternating; medians and their ratio.
2. Containment: tests/fixtures/hostile_candidate graded jailed on the fixture corpus; every distinct
   `HOSTILE <attack>: ...` line of its log and its tests' log, grouped by attack.

Usage: python bench/isolation.py [--repeats 3] [--questions 40]
Left out on purpose: pass/fail thresholds (these machines are shared and noisy; quote medians and ratios),
and any unconfined run of the hostile fixture, which would write into this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.grade import grade  # noqa: E402
from grader.sandbox import Limits  # noqa: E402


def timed_grade(candidate: Path, out: Path, dev: Path, isolation: str) -> float:
    started = time.perf_counter()
    card = grade(candidate, out, dev, None, ROOT / "corpus", "grader.solutions", limits=Limits(), run_tests=False,
                 isolation=isolation)
    seconds = time.perf_counter() - started
    errors = {side: info.errors for side, info in card.sides.items()}
    print(f"  {isolation:<5} {seconds:6.1f} s  (errors per side: {errors})", flush=True)
    if any(errors.values()):
        raise SystemExit(f"errors while grading: {[i for info in card.sides.values() for i in info.incidents]}")
    return seconds


def wall_time(tmp: Path, repeats: int, questions: int) -> dict:
    dev = tmp / "dev.jsonl"
    dev.write_text("".join((ROOT / "golden_set" / "dev.jsonl").read_text().splitlines(keepends=True)[:questions]))
    candidate = tmp / "starter"
    shutil.copytree(ROOT / "exercise", candidate / "exercise", ignore=shutil.ignore_patterns("__pycache__"))
    print("warming caches (not counted)", flush=True)
    timed_grade(candidate, tmp / "warm", dev, "none")
    times: dict[str, list[float]] = {"bwrap": [], "none": []}
    for _ in range(repeats):
        for level in times:
            times[level].append(timed_grade(candidate, tmp / f"out-{level}", dev, level))
    medians = {level: statistics.median(values) for level, values in times.items()}
    return {"questions": questions, "seconds": times, "median_s": medians,
            "ratio_bwrap_to_none": round(medians["bwrap"] / medians["none"], 3)}


def containment(tmp: Path) -> dict[str, list[str]]:
    fixtures = ROOT / "tests" / "fixtures"
    candidate = tmp / "hostile"
    shutil.copytree(fixtures / "hostile_candidate", candidate, ignore=shutil.ignore_patterns("__pycache__"))
    (candidate / "hostile.json").write_text(json.dumps({"flood_mb": 4, "daemon_seconds": 30}))
    os.environ["RAGKATA_RETRIEVER"] = "bm25"  # the fixture needs no embeddings; only for this grade
    try:
        grade(candidate, tmp / "hostile-out", fixtures / "golden.jsonl", None, fixtures / "corpus", "exercise",
              limits=Limits(timeout_s=5, memory_mb=4096), run_tests=True, isolation="bwrap")
    finally:
        del os.environ["RAGKATA_RETRIEVER"]
    lines: dict[str, list[str]] = {}
    for log in ("candidate.log", "tests.log"):
        for line in (tmp / "hostile-out" / "logs" / log).read_text(errors="replace").splitlines():
            if line.startswith("HOSTILE "):
                attack = line.split(":", 1)[0].removeprefix("HOSTILE ")
                if line not in lines.setdefault(attack, []):
                    lines[attack].append(line)
    survivors = subprocess.run(["pgrep", "-f", "ragkata-hostile-daemon"], capture_output=True, text=True).stdout.split()
    lines["after the grade"] = [f"hostile daemons alive on the host: {len(survivors)}"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=40, help="dev questions per grade")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragkata-bench-isolation-") as tmp:
        report = {"containment": containment(Path(tmp)), "wall_time": wall_time(Path(tmp), args.repeats, args.questions)}
    for attack, lines in report["containment"].items():
        print(f"\n[{attack}]")
        for line in lines[:8]:
            print(f"  {line[:220]}")
    wall = report["wall_time"]
    print(f"\ngrade of {wall['questions']} dev questions, warm caches, median of {args.repeats}: "
          f"bwrap {wall['median_s']['bwrap']:.1f} s, none {wall['median_s']['none']:.1f} s, "
          f"ratio {wall['ratio_bwrap_to_none']:.2f}")
    print(json.dumps(report["wall_time"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
