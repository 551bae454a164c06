"""Load a corpus folder into Document records: Markdown with YAML front matter, HTML, and plain text.

The text each loader produces is the text golden quotes are checked against, so it is part of the
contract (see corpus/README.md, "Format"). Left out on purpose: PDFs, nested includes, and any
cleverness in HTML rendering beyond headings, paragraphs, lists and table rows.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import yaml

from exercise.contracts import Document
from harness.errors import InputError

EXTENSIONS = (".md", ".html", ".txt")
TYPES = ("guide", "api-reference", "pricing", "policy", "runbook", "release-notes", "postmortem",
         "faq", "support-macro", "security")
PRODUCTS = ("object-storage", "queues", "functions", "platform")
STATUSES = ("current", "superseded")
REQUIRED = ("title", "type", "product", "updated", "status")
OPTIONAL = ("superseded_by", "canary", "id")
CANARY_PATTERN = re.compile(r"KC-CANARY-[A-Z0-9]{6}")
CANARIES_FILE = "canaries.json"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class CorpusError(InputError):
    """Corpus problems, each located by file and line, with the fix (see harness/errors.py)."""


@dataclass(frozen=True)
class RawDocument:
    """A file's metadata (with the line each key stood on) and its text, before checks."""

    path: Path
    meta: dict[str, str]
    meta_lines: dict[str, int]
    text: str


# --- Markdown ---------------------------------------------------------------------------------

def read_markdown(path: Path) -> RawDocument:
    """`---` YAML front matter `---`, then the body. Text = the body with leading blank lines removed."""
    source = path.read_text(encoding="utf-8")
    lines = source.split("\n")
    if not lines or lines[0].strip() != "---":
        raise CorpusError(path, 1, "(front matter)", "Markdown documents must start with a '---' line "
                          "followed by YAML metadata (title, type, product, updated, status) and a closing '---'")
    try:
        close = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise CorpusError(path, 1, "(front matter)", "no closing '---' line after the YAML metadata") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:close])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise CorpusError(path, line, "(front matter)", f"invalid YAML ({getattr(exc, 'problem', exc)}); "
                          "write one 'key: value' per line, and quote a value that contains ': ' "
                          "(title: \"Queues: an overview\")") from None
    if not isinstance(meta, dict):
        raise CorpusError(path, 2, "(front matter)", "front matter must be 'key: value' lines")
    meta_lines = {}
    for offset, line in enumerate(lines[1:close], start=2):
        key = line.split(":", 1)[0].strip().lower()
        if key and ":" in line:
            meta_lines.setdefault(key, offset)
    body = "\n".join(lines[close + 1:]).lstrip("\n")
    return RawDocument(path, {str(k).lower(): _scalar(v) for k, v in meta.items()}, meta_lines, body)


def _scalar(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else ("" if value is None else str(value))


# --- HTML -------------------------------------------------------------------------------------

_BLOCKS = {"p", "div", "pre", "blockquote", "section", "article", "header", "footer", "main", "table",
           "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "aside", "nav", "details", "summary", "hr"}
_HEADINGS = {f"h{n}": n for n in range(1, 7)}


class _HtmlText(HTMLParser):
    """Flattens <body> into Markdown-like text: headings, paragraphs, '- ' list items, '| a | b |' rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.prefix = ""
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.skip = 0
        self.in_body = False
        self.in_pre = False
        self.title: list[str] = []
        self.in_title = False
        self.meta: dict[str, str] = {}
        self.meta_lines: dict[str, int] = {}

    def flush(self) -> None:
        text = "".join(self.current)
        text = text.strip("\n") if self.in_pre else re.sub(r"[ \t\r\f\v]+", " ", text).strip()
        text = "\n".join(line.strip() for line in text.split("\n")) if not self.in_pre else text
        if text:
            self.blocks.append(self.prefix + text)
        self.current, self.prefix = [], ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            values = dict(attrs)
            if values.get("name"):
                key = values["name"].lower().replace("-", "_")
                self.meta[key] = values.get("content") or ""
                self.meta_lines.setdefault(key, self.getpos()[0])
        elif tag == "title":
            self.in_title = True
        elif tag == "body":
            self.in_body = True
        elif tag in ("script", "style"):
            self.skip += 1
        if not self.in_body or self.skip:
            return
        if tag in _HEADINGS:
            self.flush()
            self.prefix = "#" * _HEADINGS[tag] + " "
        elif tag == "li":
            self.flush()
            self.prefix = "- "
        elif tag == "tr":
            self.flush()
            self.row = []
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "br":
            (self.cell if self.cell is not None else self.current).append("\n")
        elif tag in _BLOCKS:
            self.flush()
            self.in_pre = tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        if not self.in_body or self.skip:
            return
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append(re.sub(r"\s+", " ", "".join(self.cell)).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.blocks.append("| " + " | ".join(self.row) + " |")
            self.row = None
        elif tag in _HEADINGS or tag == "li" or tag in _BLOCKS:
            self.flush()
            self.in_pre = False
        elif tag == "body":
            self.flush()
            self.in_body = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if not self.in_body or self.skip:
            return
        (self.cell if self.cell is not None else self.current).append(data)

    def text(self) -> str:
        """Blocks joined by blank lines, except consecutive table rows and list items, joined by newlines."""
        out: list[str] = []
        for block in self.blocks:
            joined_kind = block.startswith("| ") or block.startswith("- ")
            if out and joined_kind and (out[-1].startswith(block[:2])):
                out[-1] += "\n" + block
            else:
                out.append(block)
        return "\n\n".join(out)


def read_html(path: Path) -> RawDocument:
    """<title> and <meta name=... content=...> give the metadata; <body> gives the text."""
    parser = _HtmlText()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    parser.flush()
    meta = dict(parser.meta)
    title = html.unescape("".join(parser.title)).strip()
    if title:
        meta["title"] = title
    return RawDocument(path, meta, parser.meta_lines, parser.text())


# --- Plain text -------------------------------------------------------------------------------

def read_text(path: Path) -> RawDocument:
    """`Key: value` header lines up to the first blank line, then the body."""
    lines = path.read_text(encoding="utf-8").split("\n")
    meta: dict[str, str] = {}
    meta_lines: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            body = "\n".join(lines[number:]).lstrip("\n")
            return RawDocument(path, meta, meta_lines, body)
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            raise CorpusError(path, number, "(header)", f"line {line!r} is not 'Key: value'; plain-text documents "
                              "start with Key: value lines (Title, Type, Product, Updated, Status), then a blank line")
        name = key.strip().lower().replace("-", "_")
        meta[name] = value.strip()
        meta_lines[name] = number
    raise CorpusError(path, len(lines), "(header)", "no blank line after the header; put one between the "
                      "'Key: value' lines and the body")


READERS = {".md": read_markdown, ".html": read_html, ".txt": read_text}


# --- Documents --------------------------------------------------------------------------------

def check_metadata(raw: RawDocument, doc_id: str) -> list[CorpusError]:
    """Every problem in one raw document's metadata and text; [] when it makes a valid Document."""
    problems: list[CorpusError] = []
    meta = raw.meta

    def fail(field: str, message: str) -> None:
        problems.append(CorpusError(raw.path, raw.meta_lines.get(field, 1), field, message))

    for field in REQUIRED:
        if not meta.get(field, "").strip():
            fail(field, f"missing; every document needs {', '.join(REQUIRED)}")
    for key in sorted(set(meta) - set(REQUIRED) - set(OPTIONAL)):
        fail(key, f"unknown metadata key; allowed: {', '.join(REQUIRED + OPTIONAL)}")
    choices = {"type": TYPES, "product": PRODUCTS, "status": STATUSES}
    for field, allowed in choices.items():
        if meta.get(field, "").strip() and meta[field] not in allowed:
            fail(field, f"value {meta[field]!r} is not one of: {', '.join(allowed)}")
    if meta.get("updated", "").strip() and not _DATE.fullmatch(meta["updated"]):
        fail("updated", f"value {meta['updated']!r} is not a date; write YYYY-MM-DD")
    status, superseded_by = meta.get("status"), meta.get("superseded_by")
    if status == "superseded" and not superseded_by:
        fail("status", "a superseded document needs 'superseded_by: <doc id of its replacement>'")
    if superseded_by and status == "current":
        fail("superseded_by", "only documents with 'status: superseded' may name a replacement")
    if meta.get("id") and meta["id"] != doc_id:
        fail("id", f"value {meta['id']!r} differs from the file path {doc_id!r}; the doc id is the "
             "path relative to the corpus folder, so remove the 'id' key or make it match")
    canary = meta.get("canary")
    if canary and not CANARY_PATTERN.fullmatch(canary):
        fail("canary", f"value {canary!r} must look like KC-CANARY-ABC123 (6 upper-case letters or digits)")
    if not raw.text.strip():
        problems.append(CorpusError(raw.path, 1, "(text)", "the document has no body text"))
    return problems


def to_document(raw: RawDocument, doc_id: str) -> Document:
    """Check the metadata of one raw document and build the record. Raises CorpusError listing every problem."""
    problems = check_metadata(raw, doc_id)
    if problems:
        raise CorpusError.joined(problems)
    return Document(
        doc_id=doc_id,
        title=raw.meta["title"],
        text=raw.text,
        type=raw.meta["type"],
        product=raw.meta["product"],
        updated=raw.meta["updated"],
        status=raw.meta["status"],
        superseded_by=raw.meta.get("superseded_by") or None,
        canary=raw.meta.get("canary") or None,
    )


def corpus_files(root: Path | str) -> list[Path]:
    """Every document file under root, sorted; README.md at the top level is documentation, not corpus."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus folder not found; pass --corpus with the folder that holds "
                                "the .md/.html/.txt documents (the shipped one is corpus/)")
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix in EXTENSIONS and p.relative_to(root).as_posix() != "README.md"
    )


def doc_id_of(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def load_document(path: Path, root: Path) -> Document:
    """One file as a Document. Raises CorpusError listing every problem in it.

    A file that cannot be read (no front matter, invalid YAML, a header line that is not 'Key: value')
    is one problem: past that point there is no telling metadata from text.
    """
    try:
        raw = READERS[path.suffix](path)
    except UnicodeDecodeError:
        raise CorpusError(path, 1, "(file)", "not UTF-8 text; save the file as UTF-8") from None
    return to_document(raw, doc_id_of(path, root))


def read_documents(root: Path | str) -> tuple[list[Document], list[CorpusError]]:
    """Every document that loads, and every problem in the files that do not."""
    root = Path(root)
    documents: list[Document] = []
    problems: list[CorpusError] = []
    for path in corpus_files(root):
        try:
            documents.append(load_document(path, root))
        except CorpusError as exc:
            problems += exc.problems
    return documents, problems


def load_corpus(root: Path | str) -> list[Document]:
    """Load every document. Raises CorpusError listing every problem in every file, if there are any."""
    documents, problems = read_documents(root)
    if problems:
        raise CorpusError.joined(problems)
    return documents


def read_canaries(root: Path | str) -> dict[str, str]:
    """corpus/canaries.json, a list of {doc_id, canary}, as {doc_id: canary}. Missing file → {}."""
    path = Path(root) / CANARIES_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorpusError(path, exc.lineno, "(file)", f"not valid JSON ({exc.msg}); expected a list of "
                          '{"doc_id": ..., "canary": ...}') from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("doc_id"), str) and isinstance(e.get("canary"), str) for e in entries
    ):
        raise CorpusError(path, 1, "(file)", 'expected a JSON list of {"doc_id": "<path>", "canary": "KC-CANARY-..."}')
    return {e["doc_id"]: e["canary"] for e in entries}


def corpus_hash(root: Path | str) -> str:
    """sha256 over every document's path and bytes, plus the canary registry; changes when any file does."""
    root = Path(root)
    digest = hashlib.sha256()
    paths = corpus_files(root)
    if (root / CANARIES_FILE).is_file():
        paths.append(root / CANARIES_FILE)
    for path in paths:
        digest.update(doc_id_of(path, root).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
