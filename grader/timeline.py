"""The candidate's session, read back from their runs/ folder and, when there is one, their git history.

Each runs/<run_id>/ becomes one point: when it ran, at which commit, with which config and golden file,
its key metrics, what moved since the run before, and the language model it called, if any. Each of the
candidate's commits is checked for a run that measured it. Their commits are those after the bundle
commit (EXPORT_MESSAGE); without one, those after the last commit before their first run; without
runs either, all but the first. A folder that carries the project's own history keeps it out of this.
Left out on purpose: re-scoring runs (summary.json is read as written, as a harness.records.RunSummary)
and judging the candidate.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from grader.changes import LOG_FORMAT, bundle_commit, log_records
from grader.safegit import git
from grader.sandbox import endpoint_host, uses_llm
from harness.metrics import PER_TAG_METRICS
from harness.records import RunSummary

TIMELINE_METRICS = PER_TAG_METRICS  # one line per metric in the timeline chart and one column in its table
RUN_ID = re.compile(r"^(\d{8}T\d{6})-([0-9a-f]{7}|nogit)")
DEV_GOLDEN = "golden_set/dev.jsonl"


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read_summary(path: Path) -> RunSummary | None:
    """A run's summary.json; None when it is missing or unreadable (the run is then incomplete)."""
    data = _read_json(path)
    try:
        return RunSummary.from_json(data) if data is not None else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _count_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    except OSError:
        return 0


def llm_of(config: dict) -> dict | None:
    """{"model", "endpoint"} (host:port) for a Config that says generator=llm; None for any other generator."""
    if not uses_llm(config):
        return None
    return {"model": config.get("llm_model"), "endpoint": endpoint_host(config.get("llm_base_url"))}


def read_runs(runs_dir: Path) -> list[dict]:
    """Every run folder under runs_dir, oldest first; a folder without a summary is an incomplete run."""
    if not runs_dir.is_dir():
        return []
    runs = []
    for folder in sorted(runs_dir.iterdir()):
        match = RUN_ID.match(folder.name)
        if not match or folder.is_symlink() or not folder.is_dir():
            continue
        spec = _read_json(folder / "spec.json") or {}
        summary = _read_summary(folder / "summary.json")
        when = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        git = (summary.git if summary else None) or {}
        metrics = (summary.summary.metrics if summary else None) or {}
        counts = (summary.summary.counts if summary else None) or {}
        asked = spec.get("config") if isinstance(spec.get("config"), dict) else {}
        used = summary.config if summary and isinstance(summary.config, dict) and summary.config else asked
        runs.append({
            "run_id": folder.name,
            "time": when.isoformat(),
            "commit": git.get("commit") or (None if match.group(2) == "nogit" else match.group(2)),
            "dirty": git.get("dirty"),
            "complete": summary is not None and summary.complete is not False,  # an older summary may not say
            "golden": str(spec.get("golden", "")),
            "pipeline": str(spec.get("pipeline", "")),
            "config": asked,
            "llm": llm_of(used),  # from summary.json's Config, the one the pipeline used; else spec.json's
            "questions": counts.get("questions", _count_lines(folder / "samples.jsonl")),
            "errors": counts.get("errors"),
            "metrics": {name: metrics.get(name) for name in TIMELINE_METRICS},
        })
    _annotate_changes(runs)
    return runs


def _annotate_changes(runs: list[dict]) -> None:
    """Add to each run what its config changed and what its key metrics moved, against the run before."""
    previous: dict | None = None
    for run in runs:
        before = previous["config"] if previous else {}
        run["config_changes"] = [f"{k} {before.get(k)} → {v}" for k, v in sorted(run["config"].items())
                                 if previous is not None and before.get(k) != v]
        comparable = previous is not None and previous["golden"] == run["golden"] and run["complete"]
        run["moved"] = {name: round(run["metrics"][name] - previous["metrics"][name], 4)
                        for name in TIMELINE_METRICS if comparable and isinstance(run["metrics"].get(name), (int, float))
                        and isinstance(previous["metrics"].get(name), (int, float))}
        run["new_commit"] = previous is not None and (run["commit"] or "")[:7] != (previous["commit"] or "")[:7]
        if run["complete"]:
            previous = run


def read_commits(repo: Path) -> list[dict] | None:
    """The commits reachable from HEAD, oldest first, with whether each touched exercise/; None without git."""
    out = git(repo, "log", "--reverse", LOG_FORMAT, "--name-only")
    if out is None:
        return None
    return [{"commit": sha, "time": time, "subject": subject, "pipeline": any(f.startswith("exercise/") for f in files.split())}
            for sha, time, subject, files in log_records(out)]


def mark_theirs(commits: list[dict], bundle: str | None, runs: list[dict]) -> str:
    """Set each commit's "theirs" (made by the candidate, see the module docstring); returns how the
    hand-over was found, for the scorecard to say."""
    if bundle:
        found = next((i for i, c in enumerate(commits) if c["commit"] == bundle), None)
        if found is not None:
            for i, commit in enumerate(commits):
                commit["theirs"] = i > found
            return f"the bundle commit {bundle[:7]}"
    first_run = min((run["time"] for run in runs), default=None)
    before = [i for i, c in enumerate(commits) if first_run is not None and c["time"] <= first_run]
    start = before[-1] if before else 0
    for i, commit in enumerate(commits):
        commit["theirs"] = i > start
    return (f"the last commit before the first run, {commits[start]['commit'][:7]}" if before and commits else
            "the first commit" if commits else "no commits")


def _theirs(commits: list[dict]) -> list[bool]:
    """Each commit's "theirs"; a scorecard written before it was recorded: all but the first."""
    return [c.get("theirs", i > 0) for i, c in enumerate(commits)]


def _measured(commit: dict, previous: dict | None, runs: list[dict]) -> bool:
    """A commit is measured by a run made at it, or by a run on uncommitted changes just before it."""
    for run in runs:
        sha = (run["commit"] or "")[:7]
        if sha and sha == commit["commit"][:7]:
            return True
        if previous and sha == previous["commit"][:7] and run["dirty"] and run["time"] <= commit["time"]:
            return True
    return False


def _minutes(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() / 60


def last_edit(candidate: Path, commits: list[dict] | None) -> str | None:
    """When exercise/ last changed (UTC), to see whether the final code was measured.

    With git: the newest commit that touched exercise/, or, for files with uncommitted changes, their
    modification time. A clone's file times say when it was cloned, not when the code was written, so a
    committed file is dated by its commit. Without git: the newest modification time under exercise/.
    """
    if commits is not None:
        status = git(candidate, "status", "--porcelain", "--untracked-files=all", "--", "exercise") or ""
        paths = [candidate / line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if len(line) > 3]
        committed = [c["time"] for c in commits if c["pipeline"]]
    else:
        paths, committed = [p for p in (candidate / "exercise").rglob("*") if "__pycache__" not in p.parts], []
    times = [datetime.fromtimestamp(p.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
             for p in paths if p.is_file()]
    return max(times + committed, default=None)


def discipline(runs: list[dict], commits: list[dict] | None, edited: str | None) -> dict:
    """Counts for the measurement-discipline evidence; each a plain number or None when unknown."""
    times = [run["time"] for run in runs]
    gaps = [_minutes(a, b) for a, b in zip(times, times[1:])]
    # Only the candidate's commits count (mark_theirs); those that leave exercise/ alone need no run.
    theirs = _theirs(commits or [])
    pairs = [(p, c) for (p, c), mine in zip(zip(commits or [], (commits or [])[1:]), theirs[1:]) if mine and c["pipeline"]]
    work = [c for _, c in pairs]
    measured = [_measured(c, p, runs) for p, c in pairs]
    return {
        "runs": len(runs),
        "complete_runs": sum(run["complete"] for run in runs),
        "span_minutes": round(_minutes(times[0], times[-1]), 1) if len(times) > 1 else 0.0,
        "largest_gap_minutes": round(max(gaps), 1) if gaps else None,
        "other_golden_runs": sum(bool(run["golden"]) and not run["golden"].endswith(DEV_GOLDEN) for run in runs),
        "git": commits is not None,
        "earlier_commits": theirs.count(False) - 1 if commits else None,  # before the hand-over, not counted
        "commits": len(work) if commits is not None else None,
        "commits_measured": sum(measured) if commits is not None else None,
        "unmeasured_commits": [c["commit"][:7] + " " + c["subject"] for c, ok in zip(work, measured) if not ok],
        "last_edit": edited,
        "final_state_measured": (bool(times) and edited is not None and edited <= max(times)) if edited else None,
    }


def build_timeline(candidate: Path, runs_dir: Path | None = None) -> dict:
    runs = read_runs(runs_dir or candidate / "runs")
    commits = read_commits(candidate)
    handover = mark_theirs(commits, bundle_commit(candidate), runs) if commits is not None else None
    return {"metrics": list(TIMELINE_METRICS), "runs": runs, "commits": commits, "handover": handover,
            "discipline": discipline(runs, commits, last_edit(candidate, commits))}


def when(iso: str) -> str:
    """"2026-11-22T10:35:00+00:00" -> "2026-11-22 10:35" (UTC)."""
    return iso[:16].replace("T", " ")


def discipline_lines(d: dict) -> list[str]:
    """The discipline counts as the sentences the rubric and the timeline section show."""
    if not d["runs"]:
        return ["no runs/ folder with evaluations: the candidate never ran `ragkata eval` here"]
    span = d["span_minutes"]
    lines = [f"ran eval {d['runs']} time(s) ({d['complete_runs']} complete) over {span:.0f} min"
             + (f"; longest stretch without a run {d['largest_gap_minutes']:.0f} min" if d["largest_gap_minutes"] else "")]
    if d.get("earlier_commits"):
        lines.append(f"{d['earlier_commits']} commit(s) from before the hand-over are the project's, not the candidate's: not counted")
    if d["git"] and not d["commits"]:
        lines.append("no commit after the hand-over changed exercise/: nothing to check run by run")
    elif d["git"]:
        lines.append(f"{d['commits_measured']} of {d['commits']} commit(s) changing exercise/ followed by a run"
                     + (f" (unmeasured: {', '.join(d['unmeasured_commits'][:3])})" if d["unmeasured_commits"] else ""))
    else:
        lines.append("no git repository in the candidate folder: which changes were measured is unknown")
    if d["final_state_measured"] is False:
        lines.append(f"exercise/ changed at {when(d['last_edit'])} UTC, after the last run: the final code was never measured")
    elif d["final_state_measured"]:
        lines.append("the final code was measured (last run after the last edit to exercise/)")
    if d["other_golden_runs"]:
        lines.append(f"{d['other_golden_runs']} run(s) on a golden file other than {DEV_GOLDEN}")
    return lines
