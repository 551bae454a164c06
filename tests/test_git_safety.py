"""Reading a candidate's git history runs nothing the candidate's repository configures.

The fixture is a candidate repository armed every way git can run a command: core.fsmonitor, hooks
(core.hooksPath and .git/hooks), diff.external, a filter and a textconv driver named by .gitattributes,
core.pager, core.sshCommand and an include.path with more of the same. Each command appends a label to
a marker file outside the repository. The grader's reads must leave no marker and still be right; the
same reads done the plain way (`git -C repo ...`) must leave one, or the fixture is not armed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from grader.changes import what_changed
from grader.export import EXPORT_MESSAGE
from grader.safegit import git
from grader.sandbox import INTERVIEWER_ROOT
from grader.timeline import build_timeline

HOOKS = ("pre-commit", "post-commit", "commit-msg", "post-index-change", "reference-transaction", "post-checkout",
         "fsmonitor-watchman", "pre-auto-gc", "post-rewrite")


def plain_git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """git the way the grader used to call it: in the candidate's repository, with its config."""
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True)


def command(marker: Path, label: str) -> str:
    return f"echo {label} >> '{marker}'; cat"


def arm(repo: Path, marker: Path) -> None:
    """Every place in .git where a command can hide, each writing its label into marker."""
    hooks = repo.parent / "hooks"
    hooks.mkdir()
    for folder in (hooks, repo / ".git" / "hooks"):
        folder.mkdir(exist_ok=True)
        for name in HOOKS:
            (folder / name).write_text(f"#!/bin/sh\necho hook-{name} >> '{marker}'\n")
            (folder / name).chmod(0o755)
    included = repo.parent / "included.config"
    settings = {
        "core.fsmonitor": command(marker, "fsmonitor"),
        "core.hooksPath": str(hooks),
        "core.pager": command(marker, "pager"),
        "core.sshCommand": command(marker, "ssh"),
        "diff.external": command(marker, "diff-external"),
        "diff.evil.textconv": f"echo textconv >> '{marker}'; cat",
        "filter.evil.clean": command(marker, "filter-clean"),
        "filter.evil.smudge": command(marker, "filter-smudge"),
        "filter.evil.process": command(marker, "filter-process"),
        "alias.lg": f"!echo alias >> '{marker}'",
    }
    for key, value in settings.items():
        for file in (repo / ".git" / "config", included):
            subprocess.run(["git", "config", "--file", str(file), key, value], check=True)
    subprocess.run(["git", "config", "--file", str(included), "core.fsmonitor", command(marker, "include-fsmonitor")],
                   check=True)
    subprocess.run(["git", "config", "--file", str(repo / ".git" / "config"), "include.path", str(included)], check=True)


@pytest.fixture
def armed(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """(repository, marker, [bundle commit, second commit]): two commits, one tracked edit, one new file."""
    repo = tmp_path / "candidate"
    (repo / "exercise").mkdir(parents=True)
    (repo / "exercise" / "chunking.py").write_text("SIZE = 800\n")
    (repo / "exercise" / "retrieval.py").write_text("K = 5\n")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    plain_git(repo, "init", "-q")
    plain_git(repo, "add", "-A")
    plain_git(repo, "commit", "-qm", EXPORT_MESSAGE)
    (repo / "exercise" / "chunking.py").write_text("SIZE = 400\n")
    plain_git(repo, "commit", "-qam", "shorter chunks")
    commits = plain_git(repo, "rev-list", "--reverse", "HEAD").stdout.split()
    (repo / "exercise" / "retrieval.py").write_text("K = 10  # more candidates\n")  # tracked, now dirty
    (repo / "exercise" / "rerank.py").write_text("def rerank(hits):\n    return hits\n")  # untracked
    marker = tmp_path / "marker"
    arm(repo, marker)
    return repo, marker, commits


def test_the_grader_reads_an_armed_repository_without_running_anything(armed):
    repo, marker, commits = armed
    timeline = build_timeline(repo)
    changes = what_changed(repo, INTERVIEWER_ROOT)
    head = git(repo, "rev-parse", "HEAD")  # what grader/grade.py asks for the scorecard's commit and dirty
    status = git(repo, "status", "--porcelain")

    assert not marker.exists(), marker.read_text()
    assert [(c["commit"], c["subject"], c["pipeline"]) for c in timeline["commits"]] == \
        [(commits[0], EXPORT_MESSAGE, True), (commits[1], "shorter chunks", True)]
    assert timeline["discipline"]["git"] is True and timeline["discipline"]["commits"] == 1
    assert changes["method"].startswith(f"git: working tree against the bundle commit {commits[0][:7]}")
    assert {f["path"]: f["status"] for f in changes["files"]} == {
        "exercise/chunking.py": "modified", "exercise/retrieval.py": "modified", "exercise/rerank.py": "added"}
    retrieval = next(f for f in changes["files"] if f["path"] == "exercise/retrieval.py")
    assert "-K = 5" in retrieval["diff"] and "+K = 10  # more candidates" in retrieval["diff"]
    assert head.strip() == commits[1]
    assert bool(status.strip()) is True and " M exercise/retrieval.py" in status and "?? exercise/rerank.py" in status


def test_the_fixture_is_armed_so_the_plain_way_would_run_the_candidates_commands(armed):
    repo, marker, _ = armed
    plain_git(repo, "status", "--porcelain")
    plain_git(repo, "diff", "HEAD~1")
    plain_git(repo, "diff", "--no-ext-diff", "HEAD~1")
    plain_git(repo, "commit", "-qam", "commit runs the hooks")
    labels = set(marker.read_text().split())
    assert {"include-fsmonitor", "diff-external", "textconv", "hook-pre-commit"} <= labels, labels
    assert labels & {"filter-clean", "filter-process"}, labels


def test_a_new_commit_is_seen_by_the_next_read(tmp_path):
    repo = tmp_path / "candidate"
    (repo / "exercise").mkdir(parents=True)
    (repo / "exercise" / "a.py").write_text("A = 1\n")
    plain_git(repo, "init", "-q")
    plain_git(repo, "add", "-A")
    plain_git(repo, "commit", "-qm", EXPORT_MESSAGE)
    assert git(repo, "status", "--porcelain") == ""
    (repo / "exercise" / "a.py").write_text("A = 22\n")
    assert git(repo, "status", "--porcelain") == " M exercise/a.py\n"
    plain_git(repo, "commit", "-qam", "second")
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "log", "--format=%s").split("\n")[:2] == ["second", EXPORT_MESSAGE]


def test_a_folder_that_is_not_its_own_repository_gives_none(tmp_path):
    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    plain_git(outer, "init", "-q")
    plain_git(outer, "commit", "-q", "--allow-empty", "-m", "outer")
    assert git(outer / "inner", "rev-parse", "HEAD") is None  # never the enclosing repository
    worktree = tmp_path / "linked"
    plain_git(outer, "worktree", "add", "-q", str(worktree))
    assert (worktree / ".git").is_file() and git(worktree, "rev-parse", "HEAD") is None  # a .git file is not followed
    assert build_timeline(worktree)["discipline"]["git"] is False
    assert git(outer, "rev-parse", "HEAD") is not None and git(outer) is None


def test_git_variables_of_the_grader_do_not_leak_into_the_reads(armed, monkeypatch, tmp_path):
    repo, marker, commits = armed
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"sh -c 'echo env-external >> {marker}'")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='echo env-fsmonitor >> " + str(marker) + "'")
    assert git(repo, "rev-parse", "HEAD").strip() == commits[1]
    assert what_changed(repo, INTERVIEWER_ROOT)["method"].startswith("git:")
    assert not marker.exists()
    assert os.environ["GIT_DIR"].endswith("elsewhere")
