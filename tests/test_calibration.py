"""Calibration: the starter must be clearly improvable, and the reference solution must clear the bar on both splits.

Runs the starter (`exercise`) and the reference (`grader.solutions`) through the harness, exactly as
`ragkata eval` does, over golden_set/dev.jsonl and golden_set/holdout.jsonl, once per pipeline and
split (module-scoped fixtures), writing runs to a temporary folder. Slow: the first run embeds the
corpus (a few minutes on two cores; later runs hit .cache/ragkata). Skipped in the candidate bundle,
which ships neither the holdout set nor grader/solutions.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness import metrics as m
from harness.records import RunSummary
from harness.runner import RUNS_DIR_ENV, start_run

ROOT = Path(__file__).resolve().parents[1]
DEV, HOLDOUT = ROOT / "golden_set" / "dev.jsonl", ROOT / "golden_set" / "holdout.jsonl"
CORPUS = ROOT / "corpus"

STARTER_CEILING = {m.EVIDENCE_RECALL_AT[5]: 0.65, m.CITATION_PRECISION: 0.6}  # the starter must stay at or below these
REFERENCE_BAR = {
    m.EVIDENCE_RECALL_AT[5]: 0.85,
    m.CITATION_PRECISION: 0.8,
    m.FACT_RECALL: 0.75,
    m.ABSTENTION_ACCURACY: 0.85,
    m.INJECTION_RESISTANCE: 1.0,
}
MAX_SPLIT_GAP = 0.05  # |dev - holdout| for each metric of REFERENCE_BAR

# Bars the reference does not reach yet, with what it measured. strict=True: the day one passes, the xfail
# fails, and this table must be updated. See grader/solutions/NOTES.md for why.
NOT_YET_REACHED = {
    m.CITATION_PRECISION: "reference measures 0.772 on dev (0.803 holdout): the answer's chunk holds the quote for "
                          "three questions in four; the misses are mostly paraphrases and sibling chunks",
    m.FACT_RECALL: "reference measures 0.713 on dev (0.715 holdout): bounded by the same chunk choice, and a "
                   "two-unit answer misses the second fact of most multi-hop questions",
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing too
        return False


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HOLDOUT.is_file(), reason="golden_set/holdout.jsonl is absent (the candidate bundle has "
                                                     "no holdout set); calibration runs on the grader's copy only"),
    pytest.mark.skipif(not _importable("grader.solutions"),
                       reason="grader/solutions is absent (the candidate bundle has no reference solution)"),
]


def evaluate(pipeline: str, golden: Path, tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    """summary.json of one harness run of `pipeline` over `golden`, written under a temporary runs folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RUNS_DIR_ENV, str(tmp_path_factory.mktemp(f"runs-{pipeline}-{golden.stem}")))
        run = start_run(golden, CORPUS, pipeline=pipeline, timeout_s=120.0)
        for _ in run.questions():
            pass
        return run.finish()


@pytest.fixture(scope="module")
def starter_dev(tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    return evaluate("exercise", DEV, tmp_path_factory)


@pytest.fixture(scope="module")
def reference_dev(tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    return evaluate("grader.solutions", DEV, tmp_path_factory)


@pytest.fixture(scope="module")
def reference_holdout(tmp_path_factory: pytest.TempPathFactory) -> RunSummary:
    return evaluate("grader.solutions", HOLDOUT, tmp_path_factory)


def metric(run: RunSummary, name: str) -> float:
    metrics = run.summary.metrics
    if name not in metrics:
        raise AssertionError(f"{name} was not scored (metrics: {sorted(metrics)}); for "
                             f"{m.INJECTION_RESISTANCE}, corpus/canaries.json must list the injection documents")
    return metrics[name]


def bar_params(known_gaps: dict[str, str]) -> list:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=known_gaps[name])) if name in known_gaps
            else name for name in REFERENCE_BAR]


@pytest.mark.parametrize("name", STARTER_CEILING)
def test_starter_is_clearly_improvable_on_dev(starter_dev: RunSummary, name: str) -> None:
    assert metric(starter_dev, name) <= STARTER_CEILING[name], (
        f"the starter already scores {name}={metric(starter_dev, name):.3f} on dev (ceiling {STARTER_CEILING[name]}); "
        "make a default in exercise/config.py more naive, or the task has nothing left to teach")


def test_starter_does_not_already_meet_the_reference_bar(starter_dev: RunSummary) -> None:
    met = [name for name, bar in REFERENCE_BAR.items() if metric(starter_dev, name) >= bar]
    assert set(met) != set(REFERENCE_BAR), f"the starter already clears every reference bar on dev: {met}"


@pytest.mark.parametrize("name", bar_params(NOT_YET_REACHED))
def test_reference_meets_the_bar_on_dev(reference_dev: RunSummary, name: str) -> None:
    assert metric(reference_dev, name) >= REFERENCE_BAR[name], f"{name}={metric(reference_dev, name):.3f}"


@pytest.mark.parametrize("name", REFERENCE_BAR)
def test_reference_scores_the_same_on_dev_and_holdout(reference_dev: RunSummary, reference_holdout: RunSummary,
                                                      name: str) -> None:
    dev, holdout = metric(reference_dev, name), metric(reference_holdout, name)
    assert abs(dev - holdout) <= MAX_SPLIT_GAP, f"{name}: dev {dev:.3f}, holdout {holdout:.3f}"
