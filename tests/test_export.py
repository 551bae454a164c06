"""export-candidate: the bundle holds every tracked file but HELD_BACK, without interviewer-only lines, in one
clean commit; it refuses a bundle in which anything imports grader; and (slow) the bundle, in a fresh
virtualenv of its own, passes its own `make eval` and `make test` and can then be graded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from grader.changes import what_changed
from grader.cli import app
from grader.export import HELD_BACK, drop_interviewer_lines, export_candidate
from grader.sandbox import INTERVIEWER_ROOT, Limits

GIT_ID = ["-c", "user.name=t", "-c", "user.email=t@t"]
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".cache", "runs", "scorecard", "__pycache__", ".pytest_cache",
                                    "*.egg-info")
PYTEST_SUMMARY = re.compile(r"^=+ .* in [\d.]+s")  # pytest's last line
PYPROJECT = ('[project.scripts]\nragkata = "harness.cli:main"\n'
             '# interviewer-only: the candidate has no grader/\nragkata-grader = "grader.cli:main"\n\n[tool.x]\n')


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
        "golden_set/holdout.jsonl": "{}\n", "golden_set/TRAPS.md": "fixes\n", "grader/grade.py": "pass\n",
        "grader/solutions/pipeline.py": "answer = 42\n", "grader/INTERVIEWER.md": "strong answers\n",
        "tests/test_exercise.py": "import exercise\n", "tests/test_solutions.py": "import grader.solutions\n",
        "tests/fixtures/broken_candidate/exercise/pipeline.py": "1/0\n", "pyproject.toml": PYPROJECT,
        ".gitignore": "runs/\n"})
    (source / "untracked.txt").write_text("not tracked\n")
    (source / "README.md").write_text("edited, not committed\n")
    result = export_candidate(source, tmp_path / "bundle")
    bundle = tmp_path / "bundle"
    assert held_back_present(bundle) == [] and not (bundle / "grader").exists()
    assert not (bundle / "untracked.txt").exists()
    assert sorted(git(bundle, "ls-files").split()) == [".gitignore", "README.md", "exercise/pipeline.py",
                                                      "golden_set/dev.jsonl", "pyproject.toml", "tests/test_exercise.py"]
    assert result.files == 6 and set(result.held_back) == {
        "golden_set/holdout.jsonl", "golden_set/TRAPS.md", "grader/solutions/pipeline.py", "grader/INTERVIEWER.md",
        "grader/grade.py", "tests/test_solutions.py", "tests/fixtures/broken_candidate/exercise/pipeline.py"}
    assert (bundle / "pyproject.toml").read_text() == '[project.scripts]\nragkata = "harness.cli:main"\n\n[tool.x]\n'
    assert result.trimmed == ("pyproject.toml",)
    assert result.uncommitted == ("README.md",) and (bundle / "README.md").read_text() == "edited, not committed\n"
    log = git(bundle, "log", "--format=%an|%s").splitlines()
    assert log == ["ragkata|ragkata exercise"]
    assert git(bundle, "status", "--porcelain") == ""
    assert "user.name" not in git(bundle, "config", "--local", "--list")  # the candidate commits as themselves


def test_an_interviewer_only_line_drops_itself_and_the_line_below():
    assert drop_interviewer_lines("a\n  # interviewer-only: why\n  b\nc\n", "f") == "a\nc\n"
    assert drop_interviewer_lines("a\n# interviewer-only\nb", "f") == "a\n"
    assert drop_interviewer_lines("a  # interviewer-only is only a marker at the start of a line\n", "f") \
        == "a  # interviewer-only is only a marker at the start of a line\n"
    with pytest.raises(ValueError, match=r"^Dockerfile:2: '# interviewer-only' is the last line"):
        drop_interviewer_lines("a\n# interviewer-only\n", "Dockerfile")


@pytest.mark.parametrize("path, text", [
    ("harness/cli.py", "def grade():\n    from grader.grade import grade\n"),
    ("tests/test_scorecard.py", "import os, grader.scorecard\n"),
])
def test_export_refuses_a_kept_file_that_imports_grader_and_leaves_the_folder_as_it_was(tmp_path, path, text):
    source = make_repo(tmp_path / "src", {"README.md": "hi\n", "grader/grade.py": "pass\n", path: text})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=rf"{path} import grader, which the bundle leaves out.*nothing was exported$"):
        export_candidate(source, tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []
    with pytest.raises(ValueError, match="import grader"):
        export_candidate(source, tmp_path / "new")
    assert not (tmp_path / "new").exists()


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


def test_ragkata_grader_has_the_interviewers_commands():
    assert set(typer.main.get_command(app).commands) == {"grade", "export-candidate"}


def interviewer_copy(tmp_path: Path) -> Path:
    """The interviewer's repository as a fresh git repository: every file git would track, committed."""
    copy = tmp_path / "interviewer"
    shutil.copytree(INTERVIEWER_ROOT, copy, ignore=NOT_COPIED, symlinks=True)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "interviewer")
    return copy


def test_the_real_bundle_names_no_grader_script_and_no_reference(tmp_path):
    bundle = tmp_path / "bundle"
    result = export_candidate(interviewer_copy(tmp_path), bundle)  # itself refuses any file importing grader
    assert held_back_present(bundle) == [] and set(result.trimmed) == {"pyproject.toml", "Dockerfile"}
    assert "ragkata-grader" not in (bundle / "pyproject.toml").read_text()
    assert "grader" not in (bundle / "Dockerfile").read_text()
    kept = [p for p in git(bundle, "ls-files").split() if not p.startswith("corpus/") and not p.endswith(".jsonl")]
    naming = re.compile(r"grader[./]solutions|calibration|interviewer-only")
    assert [p for p in kept if naming.search((bundle / p).read_text(errors="replace"))] == []


def test_a_candidate_folder_without_git_did_not_delete_the_held_back_tests(tmp_path):
    candidate = tmp_path / "candidate"  # what the bundle holds of exercise/ and tests/, untouched, without .git
    for folder in ("exercise", "tests"):
        shutil.copytree(INTERVIEWER_ROOT / folder, candidate / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for rule in HELD_BACK:
        if rule.startswith("tests/"):
            path = candidate / rule.rstrip("/")
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    changes = what_changed(candidate, INTERVIEWER_ROOT)
    assert changes["method"].startswith("file by file") and changes["files"] == []


def bundle_environment() -> dict[str, str]:
    """The environment of a candidate's shell: no venv active, no ragkata settings, not CI (a candidate who
    has not run `make llm` sees the real-model tests skip), not inside `make` (so when this suite runs under
    `make test`, the bundle's make is a top-level one), but this machine's pip settings, and the
    interviewer's embedding cache (RAGKATA_CACHE_DIR) so nothing is embedded twice."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKATA_") and k not in
           ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "CI", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["RAGKATA_CACHE_DIR"] = str(INTERVIEWER_ROOT / ".cache" / "ragkata")
    return env


def run(cmd: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=bundle_environment())
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_bundle_passes_its_own_make_eval_and_make_test_in_a_fresh_venv_and_can_be_graded(tmp_path):
    if not (INTERVIEWER_ROOT / "golden_set" / "dev.jsonl").is_file():
        pytest.skip("golden_set/dev.jsonl is not in this copy of the repository")
    bundle = tmp_path / "bundle"
    export_candidate(interviewer_copy(tmp_path), bundle)
    assert git(bundle, "status", "--porcelain") == "" and len(git(bundle, "log", "--oneline").splitlines()) == 1

    run(["make", "eval"], bundle)  # creates bundle/.venv from nothing, as the README's first command
    scripts = bundle / ".venv" / "bin"
    assert (scripts / "ragkata").exists() and not (scripts / "ragkata-grader").exists()
    assert (bundle / "runs" / "latest" / "summary.json").is_file()
    tested = run(["make", "test"], bundle)
    summaries = [line for line in tested.stdout.splitlines() if PYTEST_SUMMARY.match(line)]  # "=== 3 passed in 1.2s ==="
    assert summaries and re.search(r"\d+ passed", summaries[-1]), tested.stdout[-3000:]
    assert not re.search(r"failed|error", summaries[-1]), summaries[-1]

    from grader.grade import grade
    from grader.isolation import bwrap_problem

    subset = tmp_path / "dev-subset.jsonl"
    subset.write_text("\n".join((bundle / "golden_set" / "dev.jsonl").read_text().splitlines()[:5]) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGKATA_RETRIEVER", "bm25")
        card = grade(bundle, tmp_path / "out", subset, None, INTERVIEWER_ROOT / "corpus", "exercise",
                     limits=Limits(timeout_s=60), run_tests=False,
                     isolation="bwrap" if bwrap_problem() is None else "none")
    assert card.timeline["discipline"]["runs"] == 1 and card.timeline["discipline"]["commits"] == 0
    assert card.changes["method"].startswith("git: working tree against the bundle commit")
    assert card.changes["totals"]["files"] == 0  # .venv, runs/, .pytest_cache and caches are ignored, not changes
