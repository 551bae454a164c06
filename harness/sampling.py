"""`ragkata eval --limit N`: a stratified, seeded sample of the golden questions, the same one every time.

The rule, in three steps:
1. Stratum: each question belongs to its rarest tag, the one the fewest questions of the file carry;
   a tie goes to the tag listed first in harness.golden.TAGS.
2. Order within a stratum: by sha256 of "<seed>:<question id>", so neither the file order nor the
   Python version moves the sample.
3. Take: first one question from every stratum, largest stratum first (ties again in TAGS order); then
   the rest in proportion to what each stratum has left: a stratum's i-th remaining question (from 0)
   comes at (i + 0.5) / (questions it has left), smallest first, ties by stratum order.
The first N questions of that order are the sample, run in golden-file order. So every tag is
represented once N reaches the number of strata, the rest is proportional, and the sample for N + 1
holds the sample for N. Left out on purpose: weighting the metrics back to the whole file.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Sequence

from harness.golden import TAGS, GoldenQuestion


def _tag_rank(tag: str) -> tuple[int, str]:
    return (TAGS.index(tag), tag) if tag in TAGS else (len(TAGS), tag)


def stratum_of(question: GoldenQuestion, tag_counts: Counter[str]) -> str:
    """The question's rarest tag; "" for an untagged question.

    Tag counts {numeric: 3, table: 2} and tags (table, numeric) -> "table".
    """
    if not question.tags:
        return ""
    return min(question.tags, key=lambda tag: (tag_counts[tag], _tag_rank(tag)))


def _draw_key(seed: int, question_id: str) -> str:
    return hashlib.sha256(f"{seed}:{question_id}".encode("utf-8")).hexdigest()


def sample_order(questions: Sequence[GoldenQuestion], seed: int = 0) -> list[GoldenQuestion]:
    """Every question, in the order in which --limit takes them (steps 1-3 of the module docstring)."""
    tag_counts = Counter(tag for question in questions for tag in set(question.tags))
    strata: dict[str, list[GoldenQuestion]] = {}
    for question in questions:
        strata.setdefault(stratum_of(question, tag_counts), []).append(question)
    names = sorted(strata, key=lambda name: (-len(strata[name]), _tag_rank(name)))
    firsts, rest = [], []
    for position, name in enumerate(names):
        drawn = sorted(strata[name], key=lambda q: _draw_key(seed, q.id))
        firsts.append(drawn[0])
        left = len(drawn) - 1
        rest.extend(((i + 0.5) / left, position, question) for i, question in enumerate(drawn[1:]))
    rest.sort(key=lambda item: (item[0], item[1]))
    return firsts + [question for _, _, question in rest]


def stratified_sample(questions: Sequence[GoldenQuestion], limit: int, seed: int = 0) -> list[GoldenQuestion]:
    """The first `limit` questions of sample_order, in golden-file order; all of them when limit >= len."""
    if limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}; example: --limit 50")
    chosen = {question.id for question in sample_order(questions, seed)[:limit]}
    return [question for question in questions if question.id in chosen]
