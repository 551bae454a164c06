"""The held-out golden questions: they validate, keep dev's mix of tags without repeating dev, and
golden_set/TRAPS.md lists the ids of each tag. Interviewer's copy only, like the holdout itself.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from harness.golden import TAGS, read_golden
from harness.validate import validate

ROOT = Path(__file__).resolve().parents[1]
DEV, HOLDOUT = ROOT / "golden_set/dev.jsonl", ROOT / "golden_set/holdout.jsonl"


def tag_counts(path: Path) -> Counter:
    return Counter(tag for q in read_golden(path) for tag in q.tags)


def test_dev_and_holdout_validate_together():
    report = validate(ROOT / "corpus", [DEV, HOLDOUT])  # together, as `ragkata validate` checks them
    assert [str(p) for p in report.problems] == []


def test_holdout_mix_and_no_overlap_with_dev():
    dev, holdout = read_golden(DEV), read_golden(HOLDOUT)
    assert len(holdout) >= 80
    assert all(tag_counts(HOLDOUT)[t] >= 4 for t in TAGS)
    assert not {q.id for q in dev} & {q.id for q in holdout}
    assert not {q.question.lower() for q in dev} & {q.question.lower() for q in holdout}
    dev_quotes = {(e.doc_id, e.quote) for q in dev for e in q.evidence}
    assert [q.id for q in holdout if any((e.doc_id, e.quote) in dev_quotes for e in q.evidence)] == []


def test_traps_md_lists_the_question_ids_of_each_tag():
    text = (ROOT / "golden_set/TRAPS.md").read_text()
    for split, path in (("Dev", DEV), ("Holdout", HOLDOUT)):
        questions = read_golden(path)
        for tag in TAGS:
            section = text.split(f"## `{tag}`", 1)[1].split("\n## ", 1)[0]
            listed = re.search(rf"\*\*{split} \(\d+\):\*\* (.*)", section).group(1).split(", ")
            assert listed == [q.id for q in questions if tag in q.tags], (split, tag)
