"""Compare two runs question by question: per-metric and per-tag deltas with a paired bootstrap interval, and flips.

A gain whose 95% interval straddles zero is not yet a gain; say so before claiming it. Left out on
purpose: multiple-comparison corrections and significance tests beyond the bootstrap interval.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness import metrics as m
from harness.records import Sample
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


def _paired(samples_a: Sequence[Sample], samples_b: Sequence[Sample], name: str,
            keep: Callable[[Sample], bool] = lambda s: True) -> tuple[list[float], list[float]]:
    """The scores of `name` for the questions both runs scored on it (and `keep` accepts), in A's order."""
    by_id_b = {s.id: s for s in samples_b}
    pairs = [(s.scores[name], by_id_b[s.id].scores[name]) for s in samples_a
             if keep(s) and s.id in by_id_b and name in s.scores and name in by_id_b[s.id].scores]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _delta(name: str, a: list[float], b: list[float]) -> Delta:
    delta, low, high = paired_bootstrap(a, b)
    return Delta(name, len(a), float(np.mean(a)), float(np.mean(b)), delta, low, high)


def check_comparable(samples_a: Sequence[Sample], samples_b: Sequence[Sample], run_a: str = "A", run_b: str = "B") -> int:
    """The number of questions both runs answered; ValueError when there are none to pair."""
    shared = {s.id for s in samples_a} & {s.id for s in samples_b}
    if not shared:
        raise ValueError(f"{run_a} and {run_b} share no question ids ({len(samples_a)} and {len(samples_b)} questions): "
                         "they ran different golden files; compare two runs over the same --golden file")
    return len(shared)


def metric_deltas(samples_a: Sequence[Sample], samples_b: Sequence[Sample]) -> list[Delta]:
    """One Delta per metric present in both runs, over the questions both runs scored on it.

    A and B are the two runs' means over those paired questions only, so for a metric that applies
    to some questions (injection_resistance, citation_valid) they can differ from each run's summary.
    """
    names = [n for n in m.METRIC_NAMES if any(n in s.scores for s in samples_a) and any(n in s.scores for s in samples_b)]
    deltas = []
    for name in names:
        a, b = _paired(samples_a, samples_b, name)
        if a:
            deltas.append(_delta(name, a, b))
    return deltas


def tag_deltas(samples_a: Sequence[Sample], samples_b: Sequence[Sample]) -> list[Delta]:
    """Per tag, the delta of the metric that tag is meant to move (metrics.tag_metric); Delta.metric
    reads "tag: metric"."""
    deltas = []
    for tag in sorted({t for s in samples_a for t in s.tags}):
        name = m.tag_metric(tag)
        a, b = _paired(samples_a, samples_b, name, keep=lambda s: tag in s.tags)
        if a:
            deltas.append(dataclasses.replace(_delta(name, a, b), metric=f"{tag}: {name}"))
    return deltas


USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "cost_usd")  # per question, from Sample.usage


def usage_deltas(samples_a: Sequence[Sample], samples_b: Sequence[Sample]) -> list[Delta]:
    """Per-question cost of generation, B against A: tokens, dollars and context characters, paired by id.

    Empty when neither run called a language model and the context sizes are equal."""
    by_id_b = {s.id: s for s in samples_b}
    pairs = [(s, by_id_b[s.id]) for s in samples_a if s.id in by_id_b and s.error is None and by_id_b[s.id].error is None]
    deltas = []
    for name in (*USAGE_FIELDS, "context_chars"):
        def value(s: Sample) -> float:
            return float(s.context_chars if name == "context_chars" else getattr(s.usage, name))
        a, b = [value(x) for x, _ in pairs], [value(y) for _, y in pairs]
        if a and (any(a) or any(b)) and a != b:
            deltas.append(_delta(name, a, b))
    return deltas


def own_means(samples: Sequence[Sample], name: str) -> tuple[float | None, int]:
    """A run's own mean of one metric and how many questions it is over, as its summary states it."""
    values = [s.scores[name] for s in samples if name in s.scores]
    return (float(np.mean(values)) if values else None), len(values)


def flips(samples_a: Sequence[Sample], samples_b: Sequence[Sample]) -> list[Flip]:
    """Questions that went from ok to a failure, or from a failure to ok."""
    by_id_b = {s.id: s for s in samples_b}
    return [Flip(s.id, s.failure, by_id_b[s.id].failure) for s in samples_a
            if s.id in by_id_b and (s.failure == "ok") != (by_id_b[s.id].failure == "ok")]


def load_run_samples(run: Path | str) -> list[Sample]:
    path = Path(run) / "samples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no samples.jsonl; pass a run folder such as runs/latest")
    return read_samples(path)
