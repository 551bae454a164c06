"""Check a corpus and its golden files together, reporting every problem with file, line, field and fix.

Run as `ragkata validate [--corpus DIR] [--golden FILE ...] [--no-golden]` (or `python -m harness.validate`).
Left out on purpose: judging whether a question is good; this checks that it is well-formed and that
its evidence really is where it says.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from exercise.contracts import Document
from harness.corpus import (CANARIES_FILE, CANARY_PATTERN, EXTENSIONS, CorpusError, corpus_files, describe_skipped,
                            did_you_mean, doc_id_of, read_canaries, read_documents, read_manifest, skipped_files)
from harness.golden import TAGS, GoldenError, GoldenQuestion, check_line
from harness.text import contains_fact, normalize_whitespace

QUOTE_MIN, QUOTE_MAX = 40, 300
SHIPPED_CORPUS, SHIPPED_GOLDEN = Path("corpus"), Path("golden_set")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"

    @classmethod
    def of(cls, error: CorpusError | GoldenError) -> Problem:
        return cls(error.path, error.line, error.field, error.message)


@dataclass(frozen=True)
class Report:
    documents: list[Document]
    questions: list[GoldenQuestion]  # the well-formed ones
    problems: list[Problem]
    golden: tuple[Path, ...] = ()  # the golden files checked
    skipped: tuple[str, ...] = ()  # files in the corpus folder that are not .md, .html or .txt

    @property
    def ok(self) -> bool:
        return not self.problems


def check_corpus(root: Path) -> tuple[list[Document], list[Problem]]:
    """Load every document (collecting every problem in each), then check links and canaries across documents.

    A document that does not load is still a document: links and registry entries naming it are not
    reported again; its own problems say what to fix.
    """
    documents, load_errors = read_documents(root)
    problems = [Problem.of(error) for error in load_errors]
    files = corpus_files(root)
    if not files:
        problems.append(Problem(str(root), 0, "(folder)", f"no documents found; a corpus folder needs at least one "
                                f"{', '.join(EXTENSIONS)} document (a top-level README.md does not count)"))
    unloaded = frozenset(doc_id_of(path, root) for path in files) - {d.doc_id for d in documents}
    by_id = {d.doc_id: d for d in documents}
    for doc in documents:
        path = str(root / doc.doc_id)
        if doc.superseded_by in unloaded:
            continue
        if doc.superseded_by and doc.superseded_by not in by_id:
            problems.append(Problem(path, 1, "superseded_by", f"value {doc.superseded_by!r} is not a document in "
                                    f"{root};{did_you_mean(doc.superseded_by, list(by_id))} name the replacement "
                                    "by its path relative to the corpus folder"))
        elif doc.superseded_by and by_id[doc.superseded_by].status != "current":
            problems.append(Problem(path, 1, "superseded_by", f"value {doc.superseded_by!r} is itself superseded; "
                                    "point at the current version"))
    problems += check_canaries(root, documents, unloaded)
    return documents, problems


def check_canaries(root: Path, documents: Sequence[Document], unloaded: frozenset[str] = frozenset()) -> list[Problem]:
    """Every canary in a document is declared in its metadata and registered in canaries.json, and vice versa.

    Registry entries for the `unloaded` doc ids (files that exist but did not load) are not checked.
    """
    problems: list[Problem] = []
    registry_path = str(root / CANARIES_FILE)
    try:
        registry = read_canaries(root)
    except CorpusError as exc:
        return [Problem.of(exc)]
    by_id = {d.doc_id: d for d in documents}
    for doc_id, canary in registry.items():
        doc = by_id.get(doc_id)
        if doc_id in unloaded:
            continue
        if doc is None:
            problems.append(Problem(registry_path, 1, "doc_id", f"value {doc_id!r} is not a document; remove the "
                                    "entry or fix the path"))
        elif canary not in doc.text:
            problems.append(Problem(registry_path, 1, "canary", f"value {canary!r} does not occur in {doc_id}; "
                                    "copy the canary exactly as it appears in the document"))
        elif doc.canary != canary:
            problems.append(Problem(str(root / doc_id), 1, "canary", f"metadata says {doc.canary!r} but "
                                    f"{CANARIES_FILE} registers {canary!r}; make them the same"))
    for doc in documents:
        found = set(CANARY_PATTERN.findall(doc.text)) | ({doc.canary} if doc.canary else set())
        for canary in sorted(found):
            if registry.get(doc.doc_id) != canary:
                problems.append(Problem(str(root / doc.doc_id), 1, "canary", f"value {canary!r} is not registered; "
                                        f'add {{"doc_id": "{doc.doc_id}", "canary": "{canary}"}} to {registry_path} '
                                        "and 'canary' to the document's metadata"))
    return problems


def check_question(q: GoldenQuestion, docs: dict[str, Document], path: str,
                   malformed: frozenset[str] = frozenset()) -> list[Problem]:
    """The rules one golden line must keep against the corpus.

    `malformed` names the fields with a shape problem (from harness.golden.check_line, e.g. "answer",
    "evidence[1]"). A rule that reads such a field is skipped, since it would only repeat that problem;
    every other rule still runs, so one line reports all of its problems at once.
    """
    if q.retrieval_only:
        return check_judged(q, docs, path)
    out: list[Problem] = []
    broken = {field.split("[")[0] for field in malformed}

    def problem(field: str, message: str) -> None:
        out.append(Problem(path, q.line, field, message))

    def usable(*fields: str) -> bool:
        return not broken.intersection(fields)

    filled = {"evidence": bool(q.evidence), "facts": bool(q.facts), "answer": bool(q.answer.strip())}
    for name, has in filled.items():
        if not usable("answerable", name):
            continue
        if q.answerable and not has:
            problem(name, "is empty but answerable is true; fill it in, or set answerable to false")
        if not q.answerable and has:
            problem(name, "must be empty when answerable is false (use [] or \"\")")
    if usable("answerable", "tags") and q.answerable == ("unanswerable" in q.tags):
        problem("tags", "the 'unanswerable' tag goes on exactly the questions with answerable false")
    if usable("tags", "evidence") and "multi-hop" in q.tags and len({e.doc_id for e in q.evidence}) < 2:
        problem("evidence", "a multi-hop question needs evidence from at least two different documents")
    quotes: list[str] = []
    # Malformed evidence items are not in q.evidence; the others keep their numbers from the file.
    numbers = (i for i in itertools.count() if f"evidence[{i}]" not in malformed)
    for i, ev in zip(numbers, q.evidence):
        field = f"evidence[{i}]"
        doc = docs.get(ev.doc_id)
        if doc is None:
            problem(f"{field}.doc_id", f"value {ev.doc_id!r} is not a document in the corpus;"
                    f"{did_you_mean(ev.doc_id, list(docs))} use the path relative to the corpus folder, e.g. "
                    "'storage/guides/lifecycle.md'")
            continue
        if doc.status != "current":
            problem(f"{field}.doc_id", f"value {ev.doc_id!r} is superseded by {doc.superseded_by!r}; quote the "
                    "current document")
        quote = normalize_whitespace(ev.quote)
        if not QUOTE_MIN <= len(quote) <= QUOTE_MAX:
            problem(f"{field}.quote", f"is {len(quote)} characters; quotes must be {QUOTE_MIN}-{QUOTE_MAX}: the "
                    "shortest passage that supports the answer, not a fragment like a bare number")
        if quote not in normalize_whitespace(doc.text):
            problem(f"{field}.quote", f"value {ev.quote[:80]!r} is not in {ev.doc_id} (after collapsing "
                    "whitespace); copy it exactly from the document text as the loader produces it")
        quotes.append(ev.quote)
    for fact in q.facts if usable("facts", "evidence") else ():
        if quotes and not any(contains_fact(quote, fact) for quote in quotes):
            problem("facts", f"value {fact!r} does not occur in any evidence quote; facts must be stated by the evidence")
    return out


def check_judged(q: GoldenQuestion, docs: dict[str, Document], path: str) -> list[Problem]:
    """The rules a retrieval-only line keeps against the corpus: each judged document exists, and the question
    carries no 'unanswerable' tag (it has relevant documents). No quote, fact or answer is there to check."""
    out = [Problem(path, q.line, "tags", "a retrieval-only question has relevant documents; drop the "
                   "'unanswerable' tag")] if "unanswerable" in q.tags else []
    for i, ev in enumerate(q.evidence):
        if ev.doc_id not in docs:
            out.append(Problem(path, q.line, f"evidence[{i}].doc_id", f"value {ev.doc_id!r} is not a document in the "
                               f"corpus;{did_you_mean(ev.doc_id, list(docs))} use the path relative to the corpus "
                               "folder"))
    return out


def check_golden(paths: Iterable[Path], docs: dict[str, Document],
                 tags: Sequence[str] = TAGS) -> tuple[list[GoldenQuestion], list[Problem]]:
    """Every problem in every line of every golden file: its shape, its ids, and its fit to the corpus.

    `tags` are the allowed tags (TAGS and those the corpus's manifest adds)."""
    questions: list[GoldenQuestion] = []
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            problems.append(Problem(str(path), 0, "(file)", "golden file not found; check the path given to --golden"))
            continue
        numbered = enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        lines = [(number, raw) for number, raw in numbered if raw.strip()]
        if not lines:
            problems.append(Problem(str(path), 1, "(file)", "has no questions; a golden file needs at least one "
                                    "question, one JSON object per line (see golden_set/README.md)"))
        for number, raw in lines:
            q, shape = check_line(raw, path, number, tags)
            problems += [Problem.of(error) for error in shape]
            if q is None:
                continue
            where = f"{path}:{number}"
            if q.id in first_seen:
                problems.append(Problem(str(path), number, "id", f"value {q.id!r} is already used at "
                                        f"{first_seen[q.id]}; ids must be unique across golden files"))
            elif q.id:
                first_seen[q.id] = where
            problems += check_question(q, docs, str(path), frozenset(error.field for error in shape))
            if not shape:
                questions.append(q)
    return questions, problems


def validate(corpus: Path | str, golden: Sequence[Path | str]) -> Report:
    """Check the corpus and every golden file; never stops at the first problem."""
    root = Path(corpus)
    documents, problems = check_corpus(root)
    paths = tuple(Path(p) for p in golden)
    try:
        extra = read_manifest(root).tags
    except CorpusError:  # already among the corpus problems
        extra = ()
    tags = TAGS + tuple(tag for tag in extra if tag not in TAGS)
    questions, golden_problems = check_golden(paths, {d.doc_id: d for d in documents}, tags)
    return Report(documents, questions, problems + golden_problems, paths, tuple(skipped_files(root)))


def describe(report: Report) -> str:
    """Counts a team wants after validating: documents by format/type/status, words, questions by tag."""
    words = sum(len(d.text.split()) for d in report.documents)
    formats = Counter(Path(d.doc_id).suffix for d in report.documents)
    tags = Counter(t for q in report.questions for t in q.tags)
    lines = [describe_skipped(report.skipped)] if report.skipped else []
    lines += [
        f"documents: {len(report.documents)} ({', '.join(f'{k} {v}' for k, v in sorted(formats.items()))}), "
        f"words: {words}, superseded: {sum(d.status == 'superseded' for d in report.documents)}, "
        f"with canary: {sum(bool(d.canary) for d in report.documents)}",
    ]
    if not report.golden:
        return "\n".join(lines + ["no golden files checked; pass --golden FILE (repeatable) to check questions "
                                   "against this corpus"])
    lines += [
        f"questions: {len(report.questions)}, answerable: {sum(q.answerable for q in report.questions)}",
        "tags: " + ", ".join(f"{t} {n}" for t, n in sorted(tags.items())),
    ]
    return "\n".join(lines)


def default_golden(root: Path = SHIPPED_GOLDEN) -> list[Path]:
    return [p for p in (root / "dev.jsonl", root / "holdout.jsonl") if p.is_file()]


def is_shipped(corpus: Path | str) -> bool:
    return Path(corpus).resolve() == SHIPPED_CORPUS.resolve()


def no_golden_message(corpus: Path | str, command: str) -> str:
    return (f"{corpus} is not the shipped corpus and no --golden was given; the shipped golden_set/ questions "
            f"are about corpus/ only, so pass --golden FILE with questions about {corpus}"
            + (", or --no-golden to check the documents alone" if command == "validate" else
               " (ragkata validate --corpus DIR --golden FILE checks them first)"))


def golden_files(corpus: Path | str, golden: Sequence[Path | str] | None, alone: bool = False) -> list[Path]:
    """The golden files to check: those given; else the shipped ones if `corpus` is the shipped folder; else
    none if `alone` (the documents checked alone), else ValueError naming the fix.

    The shipped questions quote the shipped documents, so against a team's corpus they could only fail.
    """
    if golden:
        if alone:
            raise ValueError("--golden and --no-golden contradict each other; drop one")
        return [Path(p) for p in golden]
    if alone:
        return []
    if is_shipped(corpus):
        return default_golden()
    raise ValueError(no_golden_message(corpus, "validate"))


def eval_golden(corpus: Path | str, golden: Path | str | None) -> Path:
    """The golden file of `ragkata eval`: the one given; else golden_set/dev.jsonl with the shipped corpus;
    else ValueError naming the fix (the shipped questions would only score zeros against another corpus)."""
    if golden is not None:
        return Path(golden)
    if is_shipped(corpus):
        return SHIPPED_GOLDEN / "dev.jsonl"
    raise ValueError(no_golden_message(corpus, "eval"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(SHIPPED_CORPUS))
    parser.add_argument("--golden", nargs="*", default=None)
    parser.add_argument("--no-golden", action="store_true", help="check the corpus alone")
    args = parser.parse_args(argv)
    try:
        report = validate(args.corpus, golden_files(args.corpus, args.golden, args.no_golden))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem)
    print(describe(report))
    print("ok" if report.ok else f"{len(report.problems)} problem(s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
