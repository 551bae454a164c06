"""export-candidate: the bundle holds every tracked file but the held-back ones, in one clean commit,
and (slow) it validates, runs `make eval` and `make test` on its own, and can be graded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grader.export import HELD_BACK, export_candidate
from grader.sandbox import INTERVIEWER_ROOT, Limits
from grader.cli import app

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".cache", "runs", "scorecard", "__pycache__", ".pytest_cache",
                                    "*.egg-info")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "interviewer history, with solutions")
    return root


def held_back_present(bundle: Path) -> list[str]:
    return [rule for rule in HELD_BACK if (bundle / rule.rstrip("/")).exists()]


def test_the_bundle_leaves_out_the_held_back_files_and_starts_clean(tmp_path):
    source = make_repo(tmp_path / "src", {
        "README.md": "hi\n", "exercise/pipeline.py": "x = 1\n", "golden_set/dev.jsonl": "{}\n",
        "golden_set/holdout.jsonl": "{}\n", "golden_set/TRAPS.md": "fixes\n", "grader/solutions/pipeline.py": "answer = 42\n",
        "grader/INTERVIEWER.md": "strong answers\n", "grader/grade.py": "pass\n", ".gitignore": "runs/\n"})
    (source / "untracked.txt").write_text("not tracked\n")
    (source / "README.md").write_text("edited, not committed\n")
    result = export_candidate(source, tmp_path / "bundle")
    bundle = tmp_path / "bundle"
    assert held_back_present(bundle) == []
    assert not (bundle / "untracked.txt").exists() and not (bundle / "grader" / "solutions").exists()
    assert sorted(git(bundle, "ls-files").split()) == [".gitignore", "README.md", "exercise/pipeline.py",
                                                      "golden_set/dev.jsonl", "grader/grade.py"]
    assert result.files == 5 and set(result.held_back) == {"golden_set/holdout.jsonl", "golden_set/TRAPS.md",
                                                           "grader/solutions/pipeline.py", "grader/INTERVIEWER.md"}
    assert result.uncommitted == ("README.md",) and (bundle / "README.md").read_text() == "edited, not committed\n"
    log = git(bundle, "log", "--format=%an|%s").splitlines()
    assert log == ["ragkata|ragkata exercise"]
    assert git(bundle, "status", "--porcelain") == ""
    assert "user.name" not in git(bundle, "config", "--local", "--list")  # the candidate commits as themselves


def test_export_refuses_a_non_empty_folder_and_a_non_repository(tmp_path):
    source = make_repo(tmp_path / "src", {"README.md": "hi\n"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="exists and is not empty"):
        export_candidate(source, tmp_path / "full")
    with pytest.raises(ValueError, match="not a git repository"):
        export_candidate(tmp_path / "full", tmp_path / "new")
    result = CliRunner().invoke(app, ["export-candidate", str(tmp_path / "ok"), "--source", str(source)])
    assert result.exit_code == 0 and "wrote 1 files" in result.output


def interviewer_copy(tmp_path: Path) -> Path:
    """The interviewer's repository as a fresh git repository: every file git would track, committed."""
    copy = tmp_path / "interviewer"
    shutil.copytree(INTERVIEWER_ROOT, copy, ignore=NOT_COPIED, symlinks=True)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "interviewer")
    return copy


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKATA_") and k != "PYTHONPATH"}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_bundle_validates_runs_make_eval_and_make_test_and_can_be_graded(tmp_path):
    if not (INTERVIEWER_ROOT / "golden_set" / "dev.jsonl").is_file():
        pytest.skip("golden_set/dev.jsonl is not in this copy of the repository")
    bundle = tmp_path / "bundle"
    export_candidate(interviewer_copy(tmp_path), bundle)
    assert held_back_present(bundle) == []
    assert git(bundle, "status", "--porcelain") == "" and len(git(bundle, "log", "--oneline").splitlines()) == 1

    run([sys.executable, "-m", "harness.validate", "--corpus", "corpus", "--golden", "golden_set/dev.jsonl"], bundle)
    subset = tmp_path / "dev-subset.jsonl"
    subset.write_text("\n".join((bundle / "golden_set" / "dev.jsonl").read_text().splitlines()[:5]) + "\n")
    venv = Path(sys.prefix)
    stamp = venv / ".ragkata-installed"  # -o: never re-run `make setup` (pip) against the shared venv
    run(["make", "-C", str(bundle), "-o", str(stamp), "eval", f"VENV={venv}",
         f"ARGS=--golden {subset} --pipeline exercise --config retriever=bm25"], bundle)
    assert list((bundle / "runs").glob("*/summary.json"))
    run(["make", "-C", str(bundle), "-o", str(stamp), "test", f"VENV={venv}",
         "ARGS=-q -x tests/test_validate.py tests/test_corpus.py"], bundle)

    from grader.grade import grade

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGKATA_RETRIEVER", "bm25")
        card = grade(bundle, tmp_path / "out", subset, None, INTERVIEWER_ROOT / "corpus", "exercise",
                     limits=Limits(timeout_s=60), run_tests=False)
    assert card["timeline"]["discipline"]["runs"] == 1 and card["timeline"]["discipline"]["commits"] == 0
    assert card["changes"]["method"].startswith("git: working tree against the bundle commit")
    assert card["changes"]["totals"]["files"] == 0  # runs/, .pytest_cache and caches are ignored, not changes
