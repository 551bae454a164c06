"""Imports run one way: grader -> harness -> exercise, and `ragkata` has only the candidate's commands.

exercise/ stands on its own, so a candidate can read it without the harness; harness/ never needs grader/,
which the candidate's copy leaves out. Every module's imports are read with ast, including those inside
functions. Left out on purpose: third-party imports and tests/, which may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import typer

from harness.cli import app

ROOT = Path(__file__).resolve().parents[1]
MAY_NOT_IMPORT = {"exercise": {"harness", "grader"}, "harness": {"grader"}, "grader": set()}
CANDIDATE_COMMANDS = {"eval", "compare", "ask", "index", "validate", "serve", "llm", "import"}


def top_level_imports(source: str) -> set[str]:
    """The top-level package of every absolute import in source: "from harness.cli import app" -> "harness"."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_top_level_imports_finds_imports_anywhere_in_a_module():
    source = ("import os, grader.grade\nfrom harness import cli\nfrom . import sibling\n"
              "def f():\n    from exercise.config import Config\n")
    assert top_level_imports(source) == {"os", "grader", "harness", "exercise"}


def test_imports_run_one_way():
    wrong = []
    for package, forbidden in MAY_NOT_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted(top_level_imports(path.read_text(encoding="utf-8")) & forbidden):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_ragkata_lists_only_the_candidates_commands():
    assert set(typer.main.get_command(app).commands) == CANDIDATE_COMMANDS
