"""`ragkata export-candidate DIR`: the repository as the candidate receives it, with a clean one-commit history.

Copies the files git tracks in the interviewer's repository, minus what the candidate must not see
(the holdout questions, the reference solution, the interviewer's guide), then commits them once.
Left out on purpose: packaging (zip, tar, pushing to a host); hand DIR over however you like.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from grader.changes import EXPORT_MESSAGE

# A trailing / holds back a folder. TRAPS.md says what fixes each trap and lists holdout ids: interviewer-only.
HELD_BACK = ("golden_set/holdout.jsonl", "golden_set/TRAPS.md", "grader/solutions/", "grader/INTERVIEWER.md")


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    files: int  # files copied and committed
    held_back: tuple[str, ...]  # tracked paths left out
    commit: str
    uncommitted: tuple[str, ...]  # tracked files whose on-disk version (exported) differs from HEAD


def held_back(path: str) -> bool:
    return any(path.startswith(rule) if rule.endswith("/") else path == rule for rule in HELD_BACK)


def _git(cwd: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120).stdout
    except subprocess.CalledProcessError as exc:
        raise ValueError(f"git {' '.join(args)} failed in {cwd}: {exc.stderr.strip()}") from None
    except FileNotFoundError:
        raise ValueError("git is not installed; export-candidate needs git to list tracked files and commit") from None


def export_candidate(source: Path, dest: Path) -> ExportResult:
    """Copy source's tracked files (minus HELD_BACK) into dest, an empty or new folder, and commit them once."""
    source, dest = source.resolve(), dest.resolve()
    if not (source / ".git").exists():
        raise ValueError(f"{source}: not a git repository; export-candidate copies the files git tracks there")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest}: exists and is not empty; pass a new or empty folder, e.g. ../ragkata-candidate")
    if dest == source or source in dest.parents:
        raise ValueError(f"{dest}: inside the repository being exported; choose a folder outside {source}")
    tracked = [p for p in _git(source, "ls-files", "-z").split("\0") if p]
    kept = [p for p in tracked if not held_back(p)]
    dirty = tuple(p for p in _git(source, "diff", "--name-only", "HEAD", "-z").split("\0") if p and not held_back(p))
    dest.mkdir(parents=True, exist_ok=True)
    copied = 0
    for path in kept:
        origin, target = source / path, dest / path
        if not origin.exists() and not origin.is_symlink():
            continue  # deleted on disk but still in the index: the candidate gets what is on disk
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            os.symlink(os.readlink(origin), target)
        else:
            shutil.copy2(origin, target)
        copied += 1
    leaked = [p for p in HELD_BACK if (dest / p.rstrip("/")).exists()]
    if leaked:
        raise ValueError(f"{dest}: held-back files were copied ({', '.join(leaked)}); the bundle is not safe to hand over")
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A", "-f", ".")
    # The identity is given to this one commit only, so the candidate's own commits carry theirs.
    _git(dest, "-c", "user.name=ragkata", "-c", "user.email=ragkata@example.invalid", "-c", "commit.gpgsign=false",
         "commit", "-q", "--no-verify", "-m", EXPORT_MESSAGE)
    commit = _git(dest, "rev-parse", "HEAD").strip()
    return ExportResult(dest, copied, tuple(p for p in tracked if held_back(p)), commit, dirty)
