"""Golden questions: the record, the tag vocabulary, and a loader whose errors name file, line and fix.

The loader checks each line's shape (fields and types) only. Checks against the corpus (does the
quote occur in its document, does the doc exist) live in harness/validate.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TAGS = (
    "paraphrase",
    "exact-id",
    "superseded",
    "deep-section",
    "table",
    "multi-hop",
    "unanswerable",
    "injection",
    "near-duplicate",
    "numeric",
)

FIELDS = ("id", "question", "answerable", "answer", "facts", "evidence", "tags")


class GoldenError(ValueError):
    """A golden file problem, located: file, line, field, value, and how to fix it."""

    def __init__(self, path: Path | str, line: int, field: str, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        super().__init__(f"{path}:{line}: field '{field}': {message}")


@dataclass(frozen=True)
class Evidence:
    doc_id: str  # path relative to corpus/
    quote: str  # exact substring of the document text (modulo whitespace)


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


def parse_line(raw: str, path: Path | str, line: int) -> GoldenQuestion:
    """Parse one JSONL line into a GoldenQuestion, or raise GoldenError saying what to fix."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GoldenError(path, line, "(line)", f"not valid JSON ({exc.msg} at column {exc.colno}); "
                          "each line must be one JSON object") from None
    if not isinstance(obj, dict):
        raise GoldenError(path, line, "(line)", f"expected a JSON object, got {type(obj).__name__}")
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise GoldenError(path, line, missing[0], f"missing; every line needs {', '.join(FIELDS)}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise GoldenError(path, line, unknown[0], f"unknown field; allowed fields are {', '.join(FIELDS)}")

    def expect(field: str, kind: type, what: str) -> None:
        if not isinstance(obj[field], kind) or (kind is str and field in ("id", "question") and not obj[field].strip()):
            raise GoldenError(path, line, field, f"value {obj[field]!r} is not {what}")

    expect("id", str, "a non-empty string")
    expect("question", str, "a non-empty string")
    expect("answerable", bool, "true or false")
    expect("answer", str, "a string (use \"\" when unanswerable)")
    expect("facts", list, "a list of strings")
    expect("evidence", list, "a list of {doc_id, quote} objects")
    expect("tags", list, "a list of tags")
    for fact in obj["facts"]:
        if not isinstance(fact, str) or not fact.strip():
            raise GoldenError(path, line, "facts", f"value {fact!r} is not a non-empty string")
    evidence = []
    for i, item in enumerate(obj["evidence"]):
        if not isinstance(item, dict) or set(item) != {"doc_id", "quote"} or not all(
            isinstance(item[k], str) and item[k].strip() for k in ("doc_id", "quote")
        ):
            raise GoldenError(path, line, f"evidence[{i}]", f"value {item!r} must be "
                              '{"doc_id": "<path under corpus/>", "quote": "<exact text>"}')
        evidence.append(Evidence(item["doc_id"], item["quote"]))
    for tag in obj["tags"]:
        if tag not in TAGS:
            raise GoldenError(path, line, "tags", f"unknown tag {tag!r}; use one of: {', '.join(TAGS)}")
    return GoldenQuestion(
        id=obj["id"],
        question=obj["question"],
        answerable=obj["answerable"],
        answer=obj["answer"],
        facts=tuple(obj["facts"]),
        evidence=tuple(evidence),
        tags=tuple(obj["tags"]),
        line=line,
    )


def read_golden(path: Path | str) -> list[GoldenQuestion]:
    """Load a golden JSONL file. Raises FileNotFoundError or GoldenError (first problem found).

    Blank lines are skipped. Duplicate ids within the file are an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: golden file not found; pass --golden with a path to a .jsonl file "
                                "(the shipped one is golden_set/dev.jsonl)")
    questions: list[GoldenQuestion] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        question = parse_line(raw, path, number)
        if question.id in seen:
            raise GoldenError(path, number, "id", f"value {question.id!r} repeats line {seen[question.id]}; "
                              "ids must be unique")
        seen[question.id] = number
        questions.append(question)
    return questions
