"""Compare two runs question by question: per-metric deltas with a paired bootstrap interval, and flips.

A gain whose 95% interval straddles zero is not yet a gain; say so before claiming it. Left out on
purpose: multiple-comparison corrections and significance tests beyond the bootstrap interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.runner import read_samples


@dataclass(frozen=True)
class Delta:
    metric: str
    n: int  # questions scored on this metric in both runs
    a: float  # mean in run A over those questions
    b: float
    delta: float  # b - a
    low: float  # 95% paired bootstrap interval of the delta
    high: float


@dataclass(frozen=True)
class Flip:
    id: str
    before: str  # failure label in run A
    after: str


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over paired questions, with the 2.5th and 97.5th percentiles of that mean over
    `resamples` resamplings of the questions (with replacement). Empty input raises ValueError.

    >>> paired_bootstrap([0, 0, 0], [1, 1, 1])
    (1.0, 1.0, 1.0)
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_bootstrap needs two equal, non-empty lists; got {len(a)} and {len(b)} values")
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    return float(diffs.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def metric_deltas(samples_a: Sequence[dict], samples_b: Sequence[dict]) -> list[Delta]:
    """One Delta per metric present in both runs, over the questions both runs scored on it."""
    by_id_b = {s["id"]: s for s in samples_b}
    names = sorted({m for s in samples_a for m in s["scores"]} & {m for s in samples_b for m in s["scores"]})
    deltas = []
    for name in names:
        pairs = [(s["scores"][name], by_id_b[s["id"]]["scores"][name]) for s in samples_a
                 if s["id"] in by_id_b and name in s["scores"] and name in by_id_b[s["id"]]["scores"]]
        if not pairs:
            continue
        a, b = [p[0] for p in pairs], [p[1] for p in pairs]
        delta, low, high = paired_bootstrap(a, b)
        deltas.append(Delta(name, len(pairs), float(np.mean(a)), float(np.mean(b)), delta, low, high))
    return deltas


def flips(samples_a: Sequence[dict], samples_b: Sequence[dict]) -> list[Flip]:
    """Questions that went from ok to a failure, or from a failure to ok."""
    by_id_b = {s["id"]: s for s in samples_b}
    return [Flip(s["id"], s["failure"], by_id_b[s["id"]]["failure"]) for s in samples_a
            if s["id"] in by_id_b and (s["failure"] == "ok") != (by_id_b[s["id"]]["failure"] == "ok")]


def load_run_samples(run: Path | str) -> list[dict]:
    path = Path(run) / "samples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples.jsonl; pass a run folder such as runs/latest")
    return read_samples(path)
