"""What the candidate changed against the starter, and whether their own tests pass.

With the bundle's git history, the working tree is diffed against the bundle commit (untracked files
count as added), and the candidate's commits since it are listed with their subjects and line counts;
without it, exercise/ and tests/ are compared file by file with the interviewer's. Each changed
stretch is tied to the exercise task whose markers surround it (grader/tasks.py).
Left out on purpose: judging the changes; the interviewer reads the diffs.
"""

from __future__ import annotations

import difflib
import os
import re
import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from grader.capped_log import CappedLog
from grader.export import EXPORT_MESSAGE, held_back
from grader.isolation import Jail
from grader.sandbox import memory_cap
from grader.safegit import git
from grader.tasks import by_task, hunk_tasks, task_titles

COMPARED = ("exercise", "tests")  # folders compared file by file when there is no bundle commit
MAX_DIFF_LINES = 400  # per file, in the scorecard
MAX_TEXT_BYTES = 1_000_000
MAX_COMMITS = 200  # listed in the scorecard, newest kept
TEST_COMMAND = ("-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow and not browser")
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".cache", "runs"}


def _text(path: Path) -> list[str] | None:
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            return None
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def _diff(old: list[str] | None, new: list[str] | None, path: str) -> str:
    if old is None and new is None:
        return "(binary or large file)"
    lines = list(difflib.unified_diff(old or [], new or [], f"starter/{path}", f"candidate/{path}", lineterm="", n=2))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more diff lines"]
    return "\n".join(lines)


def _entry(path: str, old: list[str] | None, new: list[str] | None, exists_old: bool, exists_new: bool) -> dict:
    status = "added" if not exists_old else "deleted" if not exists_new else "modified"
    hunks = hunk_tasks(old or [], new or [])
    tasks = by_task(hunks)
    return {"path": path, "status": status, "added": sum(h["added"] for h in hunks),
            "deleted": sum(h["deleted"] for h in hunks), "diff": _diff(old, new, path),
            "tasks": [{"task": task, **lines} for task, lines in sorted(tasks.items(), key=lambda i: (i[0] is None, i[0] or 0))]}


def _files(root: Path) -> set[str]:
    found = set()
    for folder in COMPARED:
        for path in (root / folder).rglob("*"):
            if path.is_file() and not SKIP_PARTS & set(path.relative_to(root).parts) and path.suffix != ".pyc":
                found.add(path.relative_to(root).as_posix())
    return found


def _by_files(candidate: Path, starter: Path) -> dict:
    entries = []
    missing = [folder for folder in COMPARED if not (candidate / folder).is_dir()]
    for folder in missing:  # one line for a whole missing folder, not a diff per file
        lines = sum(len(_text(p) or []) for p in (starter / folder).rglob("*.py")
                    if not held_back(p.relative_to(starter).as_posix()))
        entries.append({"path": f"{folder}/", "status": "missing", "added": 0, "deleted": lines,
                        "diff": f"(the candidate's folder has no {folder}/)",
                        "tasks": [{"task": None, "added": 0, "deleted": lines}]})
    starter_files = {p for p in _files(starter) if not held_back(p)}  # the candidate never had the held-back ones
    for path in sorted(_files(candidate) | starter_files):
        if path.split("/", 1)[0] in missing:
            continue
        old_path, new_path = starter / path, candidate / path
        old, new = _text(old_path) if old_path.is_file() else [], _text(new_path) if new_path.is_file() else []
        if old_path.is_file() and new_path.is_file() and old_path.read_bytes() == new_path.read_bytes():
            continue
        entries.append(_entry(path, old, new, old_path.is_file(), new_path.is_file()))
    return {"method": f"file by file against the interviewer's {', '.join(f + '/' for f in COMPARED)} "
                      "(no bundle commit in the candidate folder)", "files": entries}


def bundle_commit(candidate: Path) -> str | None:
    """The bundle as handed over: the oldest commit reachable from HEAD whose subject is EXPORT_MESSAGE.

    Commits before it (a folder that carries the project's own history) are not the candidate's; the
    oldest, so a later commit given the same subject cannot hide what came before it. None without one.
    """
    out = git(candidate, "log", "--reverse", "--format=%H%x09%s", "HEAD")
    for line in (out or "").splitlines():
        sha, _, subject = line.partition("\t")
        if subject == EXPORT_MESSAGE:
            return sha
    return None


LOG_FORMAT = "--format=%x00%H%x09%ct%x09%s"  # one record per commit: NUL, sha, commit time, subject


def log_records(out: str) -> list[tuple[str, str, str, str]]:
    """(sha, time in UTC ISO 8601, subject, what follows the header) per commit of `git log LOG_FORMAT` output."""
    records = []
    for record in out.split("\0")[1:]:
        header, _, body = record.partition("\n")
        sha, _, rest = header.partition("\t")
        stamp, _, subject = rest.partition("\t")
        records.append((sha, datetime.fromtimestamp(int(stamp), timezone.utc).isoformat(), subject, body))
    return records


def numstat(text: str) -> dict:
    """{"added", "deleted", "files"} from `git ... --numstat` lines, leaving out SKIP_PARTS; binary files count 0."""
    rows = [line.split("\t", 2) for line in text.splitlines() if line.count("\t") >= 2]
    kept = [row for row in rows if not SKIP_PARTS & set(Path(row[2]).parts)]
    return {"added": sum(int(row[0]) for row in kept if row[0].isdigit()),
            "deleted": sum(int(row[1]) for row in kept if row[1].isdigit()), "files": [row[2] for row in kept]}


def commits_since(candidate: Path, base: str) -> list[dict] | None:
    """The commits after `base` up to HEAD, oldest first: {commit, time (UTC), subject, added, deleted, files}.
    Lines of binary files count 0; None when git fails."""
    out = git(candidate, "log", "--reverse", "--no-renames", LOG_FORMAT, "--numstat", f"{base}..HEAD")
    if out is None:
        return None
    return [{"commit": sha, "time": time, "subject": subject, **numstat(body)}
            for sha, time, subject, body in log_records(out)]


def _by_git(candidate: Path, root: str) -> dict | None:
    changed = git(candidate, "diff", "--name-status", "--no-renames", root)
    untracked = git(candidate, "ls-files", "--others", "--exclude-standard")
    if changed is None or untracked is None:
        return None
    entries = []
    for line in changed.splitlines():
        status, _, path = line.partition("\t")
        if SKIP_PARTS & set(Path(path).parts):
            continue
        old = (git(candidate, "show", f"{root}:{path}") or "").splitlines() if status != "A" else []
        new = _text(candidate / path) if status != "D" else []
        entries.append(_entry(path, old, new, status != "A", status != "D"))
    for path in untracked.splitlines():
        if not SKIP_PARTS & set(Path(path).parts):
            entries.append(_entry(path, [], _text(candidate / path), False, True))
    commits = commits_since(candidate, root) or []
    uncommitted = numstat(git(candidate, "diff", "--numstat", "--no-renames", "HEAD") or "")
    fresh = [e for e in entries if e["status"] == "added" and e["path"] in untracked.splitlines()]
    return {"method": f"git: working tree against the bundle commit {root[:7]} (untracked files count as added)",
            "files": sorted(entries, key=lambda e: e["path"]), "bundle": root,
            "commits": commits[-MAX_COMMITS:], "commits_total": len(commits),
            "uncommitted": {"files": len(uncommitted["files"]) + len(fresh),
                            "added": uncommitted["added"] + sum(e["added"] for e in fresh),
                            "deleted": uncommitted["deleted"]}}


def _tasks(files: list[dict], titles: dict[int, str], commits: list[dict]) -> list[dict]:
    """Per task (None last: not tied to one): its title, files, lines added and deleted, and the commits
    that touched those files."""
    totals: dict[int | None, dict] = {}
    for entry in files:
        for part in entry["tasks"]:
            row = totals.setdefault(part["task"], {"files": [], "added": 0, "deleted": 0})
            row["files"].append(entry["path"])
            row["added"] += part["added"]
            row["deleted"] += part["deleted"]
    return [{"task": task, "title": titles.get(task, "not tied to a task") if task is not None else "not tied to a task",
             **row, "commits": [c["commit"][:7] for c in commits if set(c["files"]) & set(row["files"])]}
            for task, row in sorted(totals.items(), key=lambda i: (i[0] is None, i[0] or 0))]


def what_changed(candidate: Path, starter: Path) -> dict:
    """{"method", "files": [{path, status, added, deleted, diff, tasks}], "totals", "tasks"} against the
    starter; with the bundle commit also {"bundle", "commits", "commits_total", "uncommitted"}."""
    root = bundle_commit(candidate)
    result = (_by_git(candidate, root) if root else None) or _by_files(candidate, starter)
    files = result["files"]
    result["totals"] = {"files": len(files), "added": sum(f["added"] for f in files),
                        "deleted": sum(f["deleted"] for f in files)}
    result["tasks"] = _tasks(files, task_titles(starter / "exercise" / "TASKS.md"), result.get("commits", []))
    return result


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def parse_pytest_summary(output: str) -> dict[str, int]:
    """Counts from pytest's last summary line: "3 failed, 40 passed, 2 skipped in 4.1s" -> {...}."""
    lines = [line for line in output.strip().splitlines() if _COUNT.search(line)]
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for number, word in _COUNT.findall(lines[-1] if lines else ""):
        key = "errors" if word.startswith("error") else word
        counts[key] = counts.get(key, 0) + int(number)
    return counts


def run_candidate_tests(jail: Jail, log: Path, timeout_s: float = 600.0, memory_mb: int = 0) -> dict:
    """Run the candidate's fast tests in their folder inside `jail`, under the workers' memory cap; never raises
    on failure, hang or missing tests. The output is kept capped (CappedLog) in `log`."""
    shown = "python " + " ".join(f'"{a}"' if " " in a else a for a in TEST_COMMAND)
    if not (jail.candidate / "tests").is_dir():
        return {"command": shown, "ran": False, "line": "no tests/ folder in the candidate's repository"}
    started = time.perf_counter()
    # RAGKATA_RUNS_DIR: their tests' runs go to a throwaway folder, not their runs/; PYTHONPATH empty: their own
    # harness/ and exercise/ are under test, not the interviewer's.
    argv, env, cwd = jail.command(["python", *TEST_COMMAND], {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": "",
                                                             "RAGKATA_RUNS_DIR": "/tmp/ragkata-test-runs"})
    if jail.level == "none":
        env.pop("PYTHONPATH", None)
    capped = CappedLog(log)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=memory_cap(memory_mb))
    pump = capped.pump(proc.stdout)
    try:
        proc.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        jail.kill()
        proc.wait()
        timed_out = True
    pump.join(timeout=10)
    capped.close()
    output = log.read_bytes()
    text = output.decode("utf-8", "replace")
    counts = parse_pytest_summary(text)
    seconds = round(time.perf_counter() - started, 1)
    first = next((line[1:].strip() for line in text.splitlines() if line.startswith("E ")), "")
    if timed_out:
        line = f"the candidate's tests did not finish within {timeout_s:g} s ({counts['passed']} passed before the kill)"
    elif proc.returncode == 5:
        line = "pytest collected no tests"
    else:
        line = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
                f"{counts['skipped']} skipped in {seconds:g} s" + (" (stopped at the first failure: -x)"
                                                                   if counts["failed"] or counts["errors"] else ""))
        if first and not proc.returncode == 0:
            line += f"; first failure: {first[:200]}"
    return {"command": shown, "ran": True, "exit_code": proc.returncode, "timed_out": timed_out, **counts,
            "seconds": seconds, "ok": proc.returncode == 0 and not timed_out, "line": line, "log": str(log)}
