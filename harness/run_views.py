"""runs/ as the service shows it: every run with its summary, one run with its samples marked against the dev
questions, and two runs compared. Left out on purpose: writing (runs are read-only here) and holdout runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import HTTPException

from harness.api import CompareOut, DeltaOut, FlipOut, GoldenOut, RunOut, RunSummary
from harness.compare import flips, metric_deltas
from harness.golden import GoldenQuestion
from harness.metrics import covers
from harness.runner import read_samples, runs_dir
from harness.scoring import SourceCorpus, summarize


def run_folders() -> dict[str, Path]:
    """Run folders listed in runs/ (those with a spec.json), by name, oldest first; holdout runs left out."""
    root = runs_dir()
    if not root.is_dir():
        return {}
    folders = {}
    for path in sorted(root.iterdir()):
        if path.is_symlink() or not (path / "spec.json").is_file():
            continue
        try:
            golden = str(json.loads((path / "spec.json").read_text(encoding="utf-8")).get("golden", ""))
        except (json.JSONDecodeError, OSError, AttributeError):
            continue
        if "holdout" not in golden.lower():
            folders[path.name] = path
    return folders


def latest_name() -> str | None:
    """The name of the run folder runs/latest links to; None when there is no such link."""
    link = runs_dir() / "latest"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def find_run(run_id: str) -> Path:
    """Resolve a run id (or "latest") against the listing of runs/, never as a path; anything else is a 404."""
    folders = run_folders()
    name = latest_name() if run_id == "latest" else run_id
    if name not in folders:
        raise HTTPException(404, f"unknown run {run_id!r}; GET /api/runs lists the run ids ({len(folders)} in {runs_dir()})")
    return folders[name]


def run_summary(folder: Path, latest: str | None) -> RunSummary:
    """summary.json; for a run still going (or killed), a summary computed from its sample lines."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        samples = read_samples(folder / "samples.jsonl")
        summary = {**summarize(samples).to_json(), "complete": False} if samples else {}
    fields = {k: summary[k] for k in RunSummary.model_fields if k in summary and k not in ("run_id", "latest")}
    return RunSummary(run_id=folder.name, latest=folder.name == latest, **fields)


def run_summaries() -> list[RunSummary]:
    """Every listed run, oldest first (run ids sort by time), with its summary."""
    latest = latest_name()
    return [run_summary(folder, latest) for folder in run_folders().values()]


def run_out(run_id: str, golden: dict[str, GoldenQuestion], corpus: SourceCorpus) -> RunOut:
    """One run: its summary and every sample line, each hit given the indexes of the evidence it covers (by its span
    in `corpus`, as scoring decides) and each line its dev question as `expected` (None for a question not in golden)."""
    folder = find_run(run_id)
    lines = []
    for sample in read_samples(folder / "samples.jsonl"):
        question, line = golden.get(sample.id), sample.to_json()
        for hit, shown in zip(sample.retrieved, line["retrieved"]):
            chunk = corpus.sourced(hit.chunk)
            shown["evidence"] = [i for i, e in enumerate(question.evidence) if covers(chunk, e)] if question else []
        line["expected"] = GoldenOut.of(question).model_dump() if question else None
        lines.append(line)
    return RunOut(summary=run_summary(folder, latest_name()), samples=lines)


def compare_out(a: str, b: str) -> CompareOut:
    """Run b against run a: per-metric deltas with 95% paired bootstrap intervals, and the questions that went from ok
    to a failure or back."""
    samples_a, samples_b = (read_samples(find_run(r) / "samples.jsonl") for r in (a, b))
    questions = {s.id: s.question for s in samples_a}
    return CompareOut(a=a, b=b, deltas=[DeltaOut(**d.__dict__) for d in metric_deltas(samples_a, samples_b)],
                      flips=[FlipOut(id=f.id, question=questions.get(f.id, ""), before=f.before, after=f.after)
                             for f in flips(samples_a, samples_b)])
