"""`ragkata-grader export-candidate DIR`: the repository as the candidate receives it, in one clean commit.

Copies the files git tracks in the interviewer's repository, minus HELD_BACK (everything meant for the
interviewer alone), drops each `# interviewer-only` comment line together with the line below it from
the files it keeps, refuses if any kept Python file still imports grader, then commits the copy once.
Left out on purpose: packaging (zip, tar, pushing to a host); hand DIR over however you like.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

EXPORT_MESSAGE = "ragkata exercise"  # the bundle's one commit; grader/changes.py looks for it
# What the candidate does not receive; a trailing / holds back a folder. One audience per package: grader/ is
# the interviewer's. The tests listed need something held back (grader, the holdout, the broken candidate).
HELD_BACK = (
    "grader/",  # grading, scorecard, this export, the reference solution and the interviewer's guides
    "golden_set/holdout.jsonl",
    "golden_set/TRAPS.md",  # says what fixes each trap and lists holdout ids
    "tests/test_calibration.py",
    "tests/test_export.py",
    "tests/test_grader.py",
    "tests/test_scorecard_view.py",
    "tests/test_flags.py",
    "tests/test_holdout.py",
    "tests/test_solutions.py",
    "tests/test_isolation.py",
    "tests/test_git_safety.py",
    "bench/isolation.py",  # grades with the grader
    "bench/beir.py",  # runs the reference beside the starter
    "tests/fixtures/broken_candidate/",
    "tests/fixtures/hostile_candidate/",
)
# A line starting with this (after indentation) is dropped from a kept file together with the line below it,
# e.g. the `ragkata-grader` script in pyproject.toml and the Dockerfile's `COPY grader grader`.
INTERVIEWER_ONLY = "# interviewer-only"


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    files: int  # files copied and committed
    held_back: tuple[str, ...]  # tracked paths left out
    commit: str
    uncommitted: tuple[str, ...]  # tracked files whose on-disk version (exported) differs from HEAD
    trimmed: tuple[str, ...] = ()  # kept files whose interviewer-only lines were dropped


def held_back(path: str) -> bool:
    return any(path.startswith(rule) if rule.endswith("/") else path == rule for rule in HELD_BACK)


def drop_interviewer_lines(text: str, path: str) -> str:
    """text without each `# interviewer-only` line and the line below it.

    >>> drop_interviewer_lines('a = 1\\n# interviewer-only: the bundle has no b\\nb = 2\\nc = 3\\n', 'x.toml')
    'a = 1\\nc = 3\\n'
    """
    lines, kept = text.splitlines(keepends=True), []
    skip_next = False
    for number, line in enumerate(lines, start=1):
        if skip_next:
            skip_next = False
        elif line.lstrip().startswith(INTERVIEWER_ONLY):
            if number == len(lines):
                raise ValueError(f"{path}:{number}: '{INTERVIEWER_ONLY}' is the last line, so no line below it "
                                 "can be dropped; put it just above the line the candidate must not get")
            skip_next = True
        else:
            kept.append(line)
    return "".join(kept)


def imports_grader(path: Path) -> bool:
    """True when the Python file at path imports grader or one of its modules, anywhere in the file."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read its imports ({exc}); fix the file, then export again") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "grader" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "grader":
            return True
    return False


def _git(cwd: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120).stdout
    except subprocess.CalledProcessError as exc:
        raise ValueError(f"git {' '.join(args)} failed in {cwd}: {exc.stderr.strip()}") from None
    except FileNotFoundError:
        raise ValueError("git is not installed; export-candidate needs git to list tracked files and commit") from None


def _copy(origin: Path, target: Path, path: str) -> bool:
    """Copy one file; True when interviewer-only lines were dropped from it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_symlink():
        os.symlink(os.readlink(origin), target)
        return False
    shutil.copy2(origin, target)
    try:
        text = origin.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False  # binary: nothing to drop
    trimmed = drop_interviewer_lines(text, path)
    if trimmed != text:
        target.write_text(trimmed, encoding="utf-8")
    return trimmed != text


def _check_safe(dest: Path, kept: list[str]) -> None:
    """Raise ValueError when the copy in dest must not be handed over: a held-back path, or a file importing grader."""
    leaked = [p for p in HELD_BACK if (dest / p.rstrip("/")).exists()]
    if leaked:
        raise ValueError(f"{dest}: held-back files were copied ({', '.join(leaked)})")
    importers = [p for p in kept if p.endswith(".py") and (dest / p).is_file() and imports_grader(dest / p)]
    if importers:
        raise ValueError(f"{dest}: {', '.join(importers)} import grader, which the bundle leaves out; move the file "
                         "under grader/ or add it to HELD_BACK in grader/export.py")


def export_candidate(source: Path, dest: Path) -> ExportResult:
    """Copy source's tracked files (minus HELD_BACK and interviewer-only lines) into dest, a new or empty folder,
    check that nothing left imports grader, and commit them once."""
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
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    copied, trimmed = 0, []
    try:
        for path in kept:
            origin = source / path
            if not origin.exists() and not origin.is_symlink():
                continue  # deleted on disk but still in the index: the candidate gets what is on disk
            if _copy(origin, dest / path, path):
                trimmed.append(path)
            copied += 1
        _check_safe(dest, kept)
    except ValueError as exc:
        shutil.rmtree(dest)  # it was new or empty: leave it so, and the next attempt can use it
        if not created:
            dest.mkdir()
        raise ValueError(f"{exc}; nothing was exported") from None
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A", "-f", ".")
    # The identity is given to this one commit only, so the candidate's own commits carry theirs.
    _git(dest, "-c", "user.name=ragkata", "-c", "user.email=ragkata@example.invalid", "-c", "commit.gpgsign=false",
         "commit", "-q", "--no-verify", "-m", EXPORT_MESSAGE)
    commit = _git(dest, "rev-parse", "HEAD").strip()
    return ExportResult(dest, copied, tuple(p for p in tracked if held_back(p)), commit, dirty, tuple(trimmed))
