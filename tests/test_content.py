"""The shipped corpus and golden set: they validate, and the counts the exercise depends on hold."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from harness.corpus import load_corpus, read_canaries
from harness.golden import TAGS, read_golden
from harness.validate import validate

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "golden_set/dev.jsonl"


@pytest.fixture(scope="module")
def documents():
    return load_corpus(ROOT / "corpus")


def test_shipped_content_validates():
    report = validate(ROOT / "corpus", [DEV])  # the holdout is in the interviewer's copy only, and checked there
    assert [str(p) for p in report.problems] == []


def test_corpus_size(documents):
    assert len(documents) >= 220
    assert 120_000 <= sum(len(d.text.split()) for d in documents) <= 300_000
    assert {Path(d.doc_id).suffix for d in documents} == {".md", ".html", ".txt"}


def test_planted_documents(documents):
    by_id = {d.doc_id: d for d in documents}
    superseded = [d for d in documents if d.status == "superseded"]
    assert len(superseded) >= 10 and all(by_id[d.superseded_by].status == "current" for d in superseded)
    assert sum(len(d.text.split()) > 3000 for d in documents) >= 10
    assert sum(bool(re.search(r"^\| .* \|$", d.text, re.M)) for d in documents) >= 10
    canaries = read_canaries(ROOT / "corpus")
    assert len(canaries) >= 5 and all(by_id[doc].canary == c for doc, c in canaries.items())


def tag_counts(path: Path) -> Counter:
    return Counter(tag for q in read_golden(path) for tag in q.tags)


def test_dev_mix():
    questions, tags = read_golden(DEV), tag_counts(DEV)
    assert len(questions) >= 150
    assert all(tags[t] >= 8 for t in TAGS), tags
    assert tags["unanswerable"] >= 15


KINDS = ("absent-entity", "unstated-value")  # every unanswerable question carries exactly one


@pytest.mark.parametrize("name, least", [("dev", 40), ("holdout", 20)])
def test_unanswerable_questions_have_one_kind_and_a_balanced_mix(name, least):
    path = ROOT / f"golden_set/{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path.name} is in the interviewer's copy only")
    unanswerable = [q for q in read_golden(path) if "unanswerable" in q.tags]
    assert len(unanswerable) >= least, len(unanswerable)
    assert [q.id for q in unanswerable if sum(k in q.tags for k in KINDS) != 1] == []
    assert [q.id for q in read_golden(path) if "unanswerable" not in q.tags and set(KINDS) & set(q.tags)] == []
    kinds = Counter(k for q in unanswerable for k in KINDS if k in q.tags)
    assert all(kinds[k] >= 0.4 * len(unanswerable) for k in KINDS), kinds
