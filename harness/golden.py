"""Golden questions: the record, the tag vocabulary, and a loader whose errors name file, line and fix.

TAGS are the built-in tags; a corpus folder's manifest.yaml may allow more (harness/corpus.py, Manifest),
and the callers that know the corpus pass them as `tags`. The loader checks each line's shape (fields and
types) only. Checks against the corpus (does the
quote occur in its document, does the doc exist) live in harness/validate.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.errors import InputError

TAGS = (
    "paraphrase",
    "exact-id",
    "superseded",
    "deep-section",
    "table",
    "multi-hop",
    "unanswerable",
    "absent-entity",  # unanswerable: the question names a region, plan, code, version, product or feature the corpus lacks
    "unstated-value",  # unanswerable: the thing exists in the corpus, the value asked for is never stated
    "injection",
    "near-duplicate",
    "numeric",
)

FIELDS = ("id", "question", "answerable", "answer", "facts", "evidence", "tags")
RETRIEVAL_ONLY_FIELDS = ("id", "question", "retrieval_only", "evidence", "tags")  # a line with retrieval_only: true


class GoldenError(InputError):
    """Golden file problems, each located by file and line, with the fix (see harness/errors.py)."""


@dataclass(frozen=True)
class Evidence:
    doc_id: str  # path relative to corpus/
    quote: str  # exact substring of the document text (modulo whitespace); "" in a retrieval-only question
    relevance: int = 1  # graded relevance of the document (qrels score), read by the document-level metrics


@dataclass(frozen=True)
class GoldenQuestion:
    id: str
    question: str
    answerable: bool
    answer: str  # short reference answer; "" when unanswerable
    facts: tuple[str, ...]  # strings any correct answer must contain
    evidence: tuple[Evidence, ...]
    tags: tuple[str, ...]
    line: int = 0  # line in the golden file, for error messages
    retrieval_only: bool = False  # judged documents only: scored on doc_ndcg@10 and doc_recall@100, never answered


SHAPES = {  # field: (type, what its value must be)
    "id": (str, "a non-empty string"),
    "question": (str, "a non-empty string"),
    "answerable": (bool, "true or false"),
    "answer": (str, "a string (use \"\" when unanswerable)"),
    "facts": (list, "a list of strings"),
    "evidence": (list, "a list of {doc_id, quote} objects"),
    "tags": (list, "a list of tags"),
}


def check_line(raw: str, path: Path | str, line: int,
               tags: Sequence[str] = TAGS) -> tuple[GoldenQuestion | None, list[GoldenError]]:
    """Parse one JSONL line, collecting every shape problem instead of stopping at the first.

    The question is built from the well-formed parts of the line: a missing or mistyped field takes
    its empty value ("", false, []) and a malformed fact, evidence item or unknown tag is left out.
    It is None only when the line is not a JSON object. `tags` are the allowed tags.
    """
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, [GoldenError(path, line, "(line)", f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                  "each line must be one JSON object")]
    if not isinstance(obj, dict):
        return None, [GoldenError(path, line, "(line)", f"expected a JSON object, got {type(obj).__name__}")]
    if obj.get("retrieval_only") is True:
        return check_retrieval_only(obj, path, line, tags)
    problems: list[GoldenError] = []
    if "retrieval_only" in obj:
        problems.append(GoldenError(path, line, "retrieval_only", f"value {obj.pop('retrieval_only')!r} must be "
                                    "true (a question judged by document only), or left out"))

    def problem(field: str, message: str) -> None:
        problems.append(GoldenError(path, line, field, message))

    for field in FIELDS:
        if field not in obj:
            problem(field, f"missing; every line needs {', '.join(FIELDS)}")
    for field in sorted(set(obj) - set(FIELDS)):
        problem(field, f"unknown field; allowed fields are {', '.join(FIELDS)}")
    value = {}  # each well-formed field; the others are left out
    for field, (kind, what) in SHAPES.items():
        if field not in obj:
            continue
        if not isinstance(obj[field], kind) or (field in ("id", "question") and not obj[field].strip()):
            problem(field, f"value {obj[field]!r} is not {what}")
        else:
            value[field] = obj[field]
    facts = []
    for fact in value.get("facts", []):
        if not isinstance(fact, str) or not fact.strip():
            problem("facts", f"value {fact!r} is not a non-empty string")
        else:
            facts.append(fact)
    evidence = []
    for i, item in enumerate(value.get("evidence", [])):
        if not isinstance(item, dict) or set(item) != {"doc_id", "quote"} or not all(
            isinstance(item[k], str) and item[k].strip() for k in ("doc_id", "quote")
        ):
            problem(f"evidence[{i}]", f"value {item!r} must be "
                    '{"doc_id": "<path under corpus/>", "quote": "<exact text>"}')
        else:
            evidence.append(Evidence(item["doc_id"], item["quote"]))
    allowed_tags, tags = tags, []
    for tag in value.get("tags", []):
        if tag not in allowed_tags:
            problem("tags", f"unknown tag {tag!r}; use one of: {', '.join(allowed_tags)}, or allow it under 'tags' "
                    "in the corpus folder's manifest.yaml")
        else:
            tags.append(tag)
    question = GoldenQuestion(
        id=value.get("id", ""),
        question=value.get("question", ""),
        answerable=value.get("answerable", False),
        answer=value.get("answer", ""),
        facts=tuple(facts),
        evidence=tuple(evidence),
        tags=tuple(tags),
        line=line,
    )
    return question, problems


def check_retrieval_only(obj: dict, path: Path | str, line: int,
                         tags: Sequence[str] = TAGS) -> tuple[GoldenQuestion, list[GoldenError]]:
    """A retrieval-only line: {"id", "question", "retrieval_only": true, "evidence": [{"doc_id", "relevance"}],
    "tags"}. Evidence names judged documents with a graded relevance (an integer >= 1, as in BEIR's qrels);
    there is no quote, answer, facts or answerable. Every shape problem is collected, as check_line does.
    """
    problems: list[GoldenError] = []

    def problem(field: str, message: str) -> None:
        problems.append(GoldenError(path, line, field, message))

    for field in RETRIEVAL_ONLY_FIELDS:
        if field not in obj:
            problem(field, f"missing; a retrieval-only line needs {', '.join(RETRIEVAL_ONLY_FIELDS)}")
    for field in sorted(set(obj) - set(RETRIEVAL_ONLY_FIELDS)):
        problem(field, f"not allowed in a retrieval-only question (it is judged by document only); allowed fields "
                f"are {', '.join(RETRIEVAL_ONLY_FIELDS)}")
    text = {}
    for field in ("id", "question"):
        value = obj.get(field, "")
        if field in obj and (not isinstance(value, str) or not value.strip()):
            problem(field, f"value {value!r} is not a non-empty string")
        text[field] = value if isinstance(value, str) else ""
    evidence = []
    items = obj.get("evidence", [])
    if not isinstance(items, list) or ("evidence" in obj and not items):
        problem("evidence", f"value {items!r} is not a non-empty list of {{doc_id, relevance}} objects")
        items = []
    for i, item in enumerate(items):
        if (not isinstance(item, dict) or set(item) != {"doc_id", "relevance"} or not isinstance(item["doc_id"], str)
                or not item["doc_id"].strip() or type(item["relevance"]) is not int or item["relevance"] < 1):
            problem(f"evidence[{i}]", f"value {item!r} must be "
                    '{"doc_id": "<path under the corpus folder>", "relevance": <integer >= 1>}')
        else:
            evidence.append(Evidence(item["doc_id"], "", item["relevance"]))
    doc_ids = [e.doc_id for e in evidence]
    for doc_id in sorted({d for d in doc_ids if doc_ids.count(d) > 1}):
        problem("evidence", f"document {doc_id!r} is judged more than once; keep one judgement per document")
    raw_tags = obj.get("tags", [])
    if not isinstance(raw_tags, list):
        problem("tags", f"value {raw_tags!r} is not a list of tags")
        raw_tags = []
    kept = []
    for tag in raw_tags:
        if tag not in tags:
            problem("tags", f"unknown tag {tag!r}; use one of: {', '.join(tags)}, or allow it under 'tags' "
                    "in the corpus folder's manifest.yaml")
        else:
            kept.append(tag)
    question = GoldenQuestion(id=text["id"], question=text["question"], answerable=True, answer="", facts=(),
                              evidence=tuple(evidence), tags=tuple(kept), line=line, retrieval_only=True)
    return question, problems


def parse_line(raw: str, path: Path | str, line: int, tags: Sequence[str] = TAGS) -> GoldenQuestion:
    """Parse one JSONL line into a GoldenQuestion, or raise GoldenError listing every shape problem in it."""
    question, problems = check_line(raw, path, line, tags)
    if problems or question is None:
        raise GoldenError.joined(problems)
    return question


def read_golden(path: Path | str, tags: Sequence[str] = TAGS) -> list[GoldenQuestion]:
    """Load a golden JSONL file. Raises FileNotFoundError, or GoldenError listing every problem in the file.

    Blank lines are skipped. Duplicate ids within the file are an error. `tags` are the allowed tags: TAGS,
    or `golden_tags(corpus)` for the questions of a corpus whose manifest allows more.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: golden file not found; pass --golden with a path to a .jsonl file "
                                "(the shipped one is golden_set/dev.jsonl)")
    questions: list[GoldenQuestion] = []
    problems: list[GoldenError] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        question, line_problems = check_line(raw, path, number, tags)
        problems += line_problems
        if question is None:
            continue
        if question.id in seen:
            problems.append(GoldenError(path, number, "id", f"value {question.id!r} repeats line "
                                        f"{seen[question.id]}; ids must be unique"))
        elif question.id:
            seen[question.id] = number
        questions.append(question)
    if problems:
        raise GoldenError.joined(problems)
    return questions


def golden_tags(corpus: Path | str) -> tuple[str, ...]:
    """The tags allowed in questions about `corpus`: TAGS and those its manifest.yaml adds."""
    from harness.corpus import read_manifest

    extra = read_manifest(corpus).tags
    return TAGS + tuple(tag for tag in extra if tag not in TAGS)
