"""The holdout-gap test: a paired bootstrap interval of the candidate's dev − holdout gap minus the reference's.

gap_interval is one pure function of the scored samples of both sides on both splits, for one metric.
Left out on purpose: deciding what is flagged (scorecard.headline applies the rule: the interval lies
above zero, with at least MIN_HOLDOUT_N holdout questions behind the candidate's value) and any
correction for testing the headline's metrics together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness import metrics as m
from harness.records import Sample

RESAMPLES = 2000  # bootstrap draws per metric
SEED = 0  # fixed, so the same samples always give the same interval
MIN_HOLDOUT_N = 20  # fewer holdout questions behind the candidate's value: the gap is not judged
AGGREGATES = (m.ABSTENTION_PRECISION, m.ABSTENTION_RECALL, m.ABSTENTION_F1)  # computed over a set, not per question


@dataclass(frozen=True)
class GapInterval:
    gap: float  # (candidate dev − holdout) − (reference dev − holdout) over the paired questions
    low: float  # 2.5th percentile of that difference over the bootstrap draws
    high: float  # 97.5th percentile
    draws: int  # draws on which all four values were defined


def gap_interval(candidate: Mapping[str, Sequence[Sample]], reference: Mapping[str, Sequence[Sample]], metric: str,
                 resamples: int = RESAMPLES, seed: int = SEED) -> GapInterval | None:
    """D = (C_dev − C_holdout) − (R_dev − R_holdout) and its paired bootstrap 95% interval.

    `candidate` and `reference` map "dev" and "holdout" to one side's scored samples. Each value is the
    metric as harness.scoring.summarize computes it on a set of samples: for a per-question metric, the
    mean of the scores of the samples that have it; for abstention_precision, abstention_recall and
    abstention_f1, the aggregate (harness.metrics) over the (abstained, answerable) pairs of the samples
    without an error that are not retrieval-only.
    Paired: a split's questions are the ids both sides scored. Each of `resamples` draws takes as many
    dev ids as there are, with replacement, and independently as many holdout ids, and computes D* with
    the same drawn ids on both sides (a question drawn twice counts twice). low and high are the 2.5th
    and 97.5th percentiles of D* (numpy's linear interpolation) over the draws where all four values are
    defined; a per-question metric is undefined on a draw where no drawn question has it. None when a
    value is undefined on the samples themselves, or on every draw.

    Identical samples on both sides give gap = low = high = 0.0; so does a candidate whose every score
    is the reference's plus a constant on both splits.
    """
    rng = np.random.default_rng(seed)
    observed, drawn = np.zeros(1), np.zeros(resamples)
    for split, sign in (("dev", 1.0), ("holdout", -1.0)):
        by_id = {s.id: s for s in reference.get(split, ())}
        pairs = [(s, by_id[s.id]) for s in candidate.get(split, ()) if s.id in by_id]
        if not pairs:
            return None
        everything = np.arange(len(pairs))[None, :]
        draws = rng.integers(0, len(pairs), size=(resamples, len(pairs)))
        for side, s_sign in ((0, 1.0), (1, -1.0)):
            columns = _columns([pair[side] for pair in pairs], metric)
            observed = observed + sign * s_sign * _statistic(columns, everything, metric)
            drawn = drawn + sign * s_sign * _statistic(columns, draws, metric)
    if np.isnan(observed[0]):
        return None
    defined = drawn[~np.isnan(drawn)]
    if not defined.size:
        return None
    return GapInterval(float(observed[0]), float(np.percentile(defined, 2.5)), float(np.percentile(defined, 97.5)),
                       int(defined.size))


def _columns(samples: Sequence[Sample], metric: str) -> dict[str, np.ndarray]:
    """Per question, what the metric's value on a set of them is computed from."""
    if metric in AGGREGATES:
        answered = np.array([not s.retrieval_only for s in samples])
        counted = answered & np.array([s.error is None for s in samples])
        abstained = counted & np.array([bool(s.abstained) for s in samples])
        unanswerable = counted & ~np.array([bool(s.answerable) for s in samples])
        return {"answered": answered.astype(float), "abstained": abstained.astype(float),
                "unanswerable": unanswerable.astype(float), "right": (abstained & unanswerable).astype(float)}
    has = np.array([metric in s.scores for s in samples])
    return {"has": has.astype(float), "score": np.array([float(s.scores.get(metric, 0.0)) for s in samples])}


def _statistic(columns: Mapping[str, np.ndarray], draws: np.ndarray, metric: str) -> np.ndarray:
    """The metric's value on each row of question indices in `draws`; NaN where it is undefined."""
    total = {name: column[draws].sum(axis=1) for name, column in columns.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric not in AGGREGATES:
            return np.where(total["has"] > 0, total["score"] / np.maximum(total["has"], 1), np.nan)
        precision = np.where(total["abstained"] > 0, total["right"] / np.maximum(total["abstained"], 1), 0.0)
        recall = np.where(total["unanswerable"] > 0, total["right"] / np.maximum(total["unanswerable"], 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    value = {m.ABSTENTION_PRECISION: precision, m.ABSTENTION_RECALL: recall, m.ABSTENTION_F1: f1}[metric]
    return np.where(total["answered"] > 0, value, np.nan)
