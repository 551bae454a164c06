"""The scorecard as records: Scorecard is scorecard.json, Side is one pipeline's line in it.

Each record is frozen and has one to_json() and one from_json(); grade.py, the renderers and the rubric
read attributes (card.headline, card.sides["candidate"].timeouts), never top-level string keys. The
JSON field names are a contract other tools read: keep them. Sections that are only laid out
(headline rows, failures, timeline, ...) stay plain JSON data, built by scorecard.py and timeline.py.
Left out on purpose: computing any section (scorecard.py, rubric.py) and reading or writing files (grade.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from grader.sandbox import Build
from harness.records import Summary

JSON = dict[str, Any]
VERSION = 4  # 4: alerts, inputs.isolation and the digest. 3: a side has timeout_s; the generation section. 2: build is {config, index}


@dataclass(frozen=True)
class Side:
    """One pipeline as the grader ran it: what it was, how it built, and what went wrong while it ran."""

    module: str  # package whose pipeline.py has build_pipeline(), e.g. "exercise"
    root: str  # the folder the worker ran in
    config_overrides: tuple[str, ...]  # --config name=value pairs given to this side
    build: Build | None  # None when no worker ever became ready
    incidents: tuple[str, ...]  # one line each: start-up failures, time-outs, crashes, early stops
    peak_rss_mb: float
    timeouts: int
    crashes: int
    not_run: int  # questions never sent, after the pipeline was judged stuck
    errors: int  # questions scored as errors, for any reason
    log: str  # the worker's stderr
    timeout_s: float  # the per-question limit this side ran under (sandbox.question_timeout)

    def to_json(self) -> JSON:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "config_overrides": list(self.config_overrides), "incidents": list(self.incidents),
                "build": self.build.to_json() if self.build else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Side:
        return cls(module=str(data["module"]), root=str(data["root"]),
                   config_overrides=tuple(data["config_overrides"]),
                   build=Build.from_json(data["build"]) if data.get("build") else None,
                   incidents=tuple(data["incidents"]), peak_rss_mb=float(data["peak_rss_mb"]),
                   timeouts=int(data["timeouts"]), crashes=int(data["crashes"]), not_run=int(data["not_run"]),
                   errors=int(data["errors"]), log=str(data["log"]), timeout_s=float(data["timeout_s"]))


@dataclass(frozen=True)
class Scorecard:
    """scorecard.json. Sides and summaries are keyed by side ("starter", "candidate", "reference");
    a summary by split ("dev", "holdout", "all"), None for a split with no questions."""

    version: int
    generated: str  # UTC, ISO 8601
    candidate: Mapping[str, Any]  # {"dir", "name", "commit", "dirty"}
    inputs: Mapping[str, Any]  # {"dev", "holdout", "corpus", "limits", "reference", "candidate_config", ...}
    sides: Mapping[str, Side]
    summaries: Mapping[str, Mapping[str, Summary | None]]
    headline: Mapping[str, Any]  # scorecard.headline
    per_tag: Sequence[Mapping[str, Any]]  # scorecard.per_tag
    failures: Mapping[str, Any]  # scorecard.failures
    latency: Mapping[str, Any]  # scorecard.latency
    generation: Mapping[str, Any]  # scorecard.generation: generator, model, endpoint host, tokens and cost per side
    timeline: Mapping[str, Any]  # timeline.build_timeline, or {"error"}
    changes: Mapping[str, Any]  # changes.what_changed, or {"error"}
    tests: Mapping[str, Any]  # changes.run_candidate_tests
    notes: Sequence[str]
    alerts: Sequence[str]  # shown before anything else: an unconfined candidate, a baseline that never built
    rubric: Sequence[Mapping[str, Any]]  # rubric.build_rubric, with the ratings folded in
    ratings: Mapping[str, Any]  # {"file", "rated", "of", "total", "max", "mean"}
    seconds: float  # how long grading took
    digest: str = ""  # digest.sign of the rest, set when the files are written

    def to_json(self) -> JSON:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**data, "sides": {name: side.to_json() for name, side in self.sides.items()},
                "summaries": {name: {split: s.to_json() if s else None for split, s in splits.items()}
                              for name, splits in self.summaries.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scorecard:
        """KeyError, TypeError or ValueError when `data` is not a scorecard of this version's shape."""
        plain = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name not in ("sides", "summaries")}
        return cls(**plain, sides={name: Side.from_json(side) for name, side in data["sides"].items()},
                   summaries={name: {split: Summary.from_json(s) if s else None for split, s in splits.items()}
                              for name, splits in data["summaries"].items()})
