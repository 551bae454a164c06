"""Which exercise task a changed line belongs to, read from the markers the starter's code carries.

The starter marks its work with comments that name a task: `# TODO(task 4): ...`, a field's
`# ... (task 1)` note, a test's `@pytest.mark.task(2)`. A changed stretch of a file (one difflib hunk)
belongs to the tasks its own lines name; else to the nearest marker in the same top-level block of
the starter's file; else, when every marker in the file names one task, to that task; else to none.
Task titles come from the `## N. Title` headings of exercise/TASKS.md.
Left out on purpose: guessing from what the code does; a change far from any marker stays unmapped.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Sequence

MARKER = re.compile(r"#.*?\btask\W{0,2}(\d+)|\bmark\.task\((\d+)\)")  # in a comment, or a pytest mark
MORE = re.compile(r"\btask\W{0,2}(\d+)")  # further task numbers on a line that has a marker
BLOCK = re.compile(r"^(?:async def|def|class)\s|^@")  # a top-level definition (or its decorator) starts a block
HEADING = re.compile(r"^## (\d+)\. (.+?)\s*$")


def line_tasks(line: str) -> set[int]:
    """The task numbers a line's comment or pytest mark names: "x = 1  # (task 2; see task 3)" -> {2, 3}."""
    found = MARKER.search(line)
    if not found:
        return set()
    start = found.start()
    return {int(n) for n in MORE.findall(line[start:])} | {int(n) for n in found.groups() if n}


def task_titles(tasks_md: Path) -> dict[int, str]:
    """{1: "Chunking", ...} from TASKS.md's `## N. Title` headings; {} when the file cannot be read."""
    try:
        text = tasks_md.read_text(encoding="utf-8")
    except OSError:
        return {}
    return {int(m.group(1)): m.group(2) for m in map(HEADING.match, text.splitlines()) if m}


def _block(lines: Sequence[str], i1: int, i2: int) -> range:
    """The top-level block of lines around [i1, i2): from the definition above to the next one."""
    start = min(i1, len(lines) - 1)
    while start > 0 and not BLOCK.match(lines[start]):
        start -= 1
    end = max(i2, i1 + 1)
    while end < len(lines) and not BLOCK.match(lines[end]):
        end += 1
    return range(max(start, 0), min(end, len(lines)))


def _nearest(lines: Sequence[str], i1: int, i2: int) -> set[int]:
    """The tasks of the marker nearest to old lines [i1, i2) within their block (ties: the one above)."""
    marked = [(i1 - i if i < i1 else i - i2 + 1, i >= i1, i) for i in _block(lines, i1, i2) if line_tasks(lines[i])]
    return line_tasks(lines[min(marked)[2]]) if marked else set()


def hunk_tasks(old: Sequence[str], new: Sequence[str]) -> list[dict]:
    """One {"tasks": [N, ...] (empty: unmapped), "added", "deleted"} per changed stretch of old -> new."""
    whole = set().union(*map(line_tasks, old)) if old else set()
    hunks = []
    matcher = difflib.SequenceMatcher(None, list(old), list(new), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        tasks = set().union(set(), *map(line_tasks, old[i1:i2]), *map(line_tasks, new[j1:j2]))
        if not tasks and old:
            tasks = _nearest(old, i1, i2) or (whole if len(whole) == 1 else set())
        hunks.append({"tasks": sorted(tasks), "added": j2 - j1, "deleted": i2 - i1})
    return hunks


def by_task(hunks: Sequence[dict]) -> dict[int | None, dict[str, int]]:
    """Lines added and deleted per task (None: unmapped); a hunk naming two tasks counts for both."""
    totals: dict[int | None, dict[str, int]] = {}
    for hunk in hunks:
        for task in hunk["tasks"] or [None]:
            entry = totals.setdefault(task, {"added": 0, "deleted": 0})
            entry["added"] += hunk["added"]
            entry["deleted"] += hunk["deleted"]
    return totals
