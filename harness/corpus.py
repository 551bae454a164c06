"""Load a corpus folder into Document records: Markdown with YAML front matter, HTML, and plain text.

The text each loader produces is the text golden quotes are checked against, so it is part of the
contract (see corpus/README.md, "Document format"). A folder's optional manifest.yaml declares its
vocabularies (required fields, the allowed values of facets such as type and product, extra golden
tags); without one, any folder of .md/.html/.txt files loads (see `Manifest`). Left out on purpose:
PDFs, nested includes, and any cleverness in HTML rendering beyond headings, paragraphs, lists and
table rows.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from exercise.contracts import Document
from harness.errors import InputError

EXTENSIONS = (".md", ".html", ".txt")
STATUSES = ("current", "superseded")  # the harness's own: superseded documents are a planted trap
FIELDS = ("title", "type", "product", "updated", "status", "superseded_by", "canary", "id")  # Document's, or checked
CANARY_PATTERN = re.compile(r"KC-CANARY-[A-Z0-9]{6}")
CANARIES_FILE = "canaries.json"
MANIFEST_FILE = "manifest.yaml"
NOT_DOCUMENTS = ("README.md", CANARIES_FILE, MANIFEST_FILE)  # top-level files that are not corpus documents
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's C parser when PyYAML was built with it
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*")


class CorpusError(InputError):
    """Corpus problems, each located by file and line, with the fix (see harness/errors.py)."""


# --- Manifest ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    """A corpus folder's vocabularies, from its manifest.yaml; `Manifest()` is the folder without one.

    required: metadata fields every document must have (non-empty).
    optional: the other metadata fields allowed; None (the key left out) allows any field.
    facets: field -> its closed list of allowed values (type, product, or any other field).
    tags: golden tags allowed besides the built-in ones (harness/golden.py, TAGS).
    Whatever the manifest says, a document without `title` takes its first heading (.md, .html) or its
    file name, `status` is current or superseded (default current), `updated` is a YYYY-MM-DD date,
    `canary` looks like KC-CANARY-ABC123 and `id` matches the file's path.
    """

    path: Path | None = None
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] | None = None
    facets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)  # where each key stood

    @property
    def allowed(self) -> tuple[str, ...] | None:
        """Every metadata field a document may carry; None when any is allowed."""
        if self.optional is None:
            return None
        return tuple(dict.fromkeys(("title",) + self.required + self.optional + tuple(self.facets)))

    @property
    def fields(self) -> frozenset[str]:
        """Field names a plain-text header may start with: the built-in ones and every declared one."""
        return frozenset(FIELDS + self.required + (self.optional or ()) + tuple(self.facets))

    def where(self, key: str) -> str:
        return f"{self.path}:{self.lines.get(key, 1)}" if self.path else "(no manifest)"


MANIFEST_KEYS = ("required", "optional", "facets", "tags")


def read_manifest(root: Path | str) -> Manifest:
    """ROOT/manifest.yaml as a Manifest, or the defaults when there is none. Raises CorpusError listing every
    problem in it."""
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return Manifest()
    source = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(source, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CorpusError(path, mark.line + 1 if mark is not None else 1, "(manifest)",
                          f"invalid YAML ({getattr(exc, 'problem', exc)}); see corpus/README.md, 'Manifest'") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise CorpusError(path, 1, "(manifest)", f"expected 'key: value' lines ({', '.join(MANIFEST_KEYS)}); "
                          "see corpus/README.md, 'Manifest'")
    lines = {}
    for number, line in enumerate(source.split("\n"), start=1):
        key = line.split(":", 1)[0]
        if ":" in line and key == key.strip() and key and not key.startswith("#"):
            lines.setdefault(key, number)
    problems: list[CorpusError] = []

    def fail(key: str, message: str) -> None:
        problems.append(CorpusError(path, lines.get(key, 1), key, message))

    def names(key: str) -> tuple[str, ...]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            fail(key, f"value {value!r} is not a list of strings, e.g. {key}: [title, type]")
            return ()
        out = tuple(_field_name(v) for v in value)
        for bad in (v for v in out if not _FIELD_NAME.fullmatch(v)):
            fail(key, f"{bad!r} is not a field name; use lower-case letters, digits and '_'")
        return out

    for key in sorted(set(map(str, data)) - set(MANIFEST_KEYS)):
        fail(key, f"unknown key; a manifest has only {', '.join(MANIFEST_KEYS)}")
    required = names("required") if "required" in data else ()
    optional = names("optional") if "optional" in data and data["optional"] is not None else None
    facets: dict[str, tuple[str, ...]] = {}
    raw_facets = data.get("facets") or {}
    if not isinstance(raw_facets, dict):
        fail("facets", "must map each field to its list of allowed values, e.g. facets: {type: [guide, faq]}")
        raw_facets = {}
    for name, values in raw_facets.items():
        if not isinstance(values, list) or not values or not all(_scalar(v).strip() for v in values):
            fail("facets", f"field {name!r}: value {values!r} is not a non-empty list of values, e.g. "
                 f"{name}: [a, b]")
            continue
        facets[_field_name(str(name))] = tuple(_scalar(v) for v in values)
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        fail("tags", f"value {tags!r} is not a list of tag strings, e.g. tags: [scifact]")
        tags = []
    if problems:
        raise CorpusError.joined(problems)
    return Manifest(path, required, optional, facets, tuple(tags), lines)


def _field_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# --- Raw documents ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RawDocument:
    """A file's metadata (with the line each key stood on) and its text, before checks.

    `problems` are read problems that did not stop reading (a malformed plain-text header line); a
    required field may hide in such a line, so a missing field is not reported beside them.
    """

    path: Path
    meta: dict[str, str]
    meta_lines: dict[str, int]
    text: str
    problems: tuple[CorpusError, ...] = ()


# --- Markdown ---------------------------------------------------------------------------------

def read_markdown(path: Path, manifest: Manifest | None = None) -> RawDocument:
    """`---` YAML front matter `---`, then the body. Text = the body with leading blank lines removed.

    A file that does not start with a `---` line has no metadata: all of it is text.
    """
    source = path.read_text(encoding="utf-8")
    lines = source.split("\n")
    if lines[0].strip() != "---":
        return RawDocument(path, {}, {}, source.lstrip("\n"))
    try:
        close = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise CorpusError(path, 1, "(front matter)", "no closing '---' line after the YAML metadata") from None
    try:
        meta = yaml.load("\n".join(lines[1:close]), Loader=YAML_LOADER) or {}
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


def read_html(path: Path, manifest: Manifest | None = None) -> RawDocument:
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

def read_text(path: Path, manifest: Manifest | None = None) -> RawDocument:
    """`Key: value` header lines up to the first blank line, then the body.

    The file has a header when its first line is `Key: value` with Key a metadata field (a built-in one,
    or one the manifest declares); otherwise all of it is text. Every malformed header line is reported.
    """
    fields = (manifest or Manifest()).fields
    source = path.read_text(encoding="utf-8")
    lines = source.split("\n")
    first, sep, _ = lines[0].partition(":")
    if not sep or _field_name(first) not in fields or " " in first.strip():
        return RawDocument(path, {}, {}, source.lstrip("\n"))
    meta: dict[str, str] = {}
    meta_lines: dict[str, int] = {}
    problems: list[CorpusError] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            body = "\n".join(lines[number:]).lstrip("\n")
            return RawDocument(path, meta, meta_lines, body, tuple(problems))
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            problems.append(CorpusError(path, number, "(header)", f"line {line!r} is not 'Key: value'; plain-text "
                                        "documents start with Key: value lines (Title, Type, Product, Updated, "
                                        "Status), then a blank line"))
            continue
        name = _field_name(key)
        meta[name] = value.strip()
        meta_lines[name] = number
    raise CorpusError.joined(problems + [CorpusError(path, len(lines), "(header)", "no blank line after the header; "
                                                     "put one between the 'Key: value' lines and the body")])


READERS = {".md": read_markdown, ".html": read_html, ".txt": read_text}


# --- Documents --------------------------------------------------------------------------------

_WHERE = {".md": "in the YAML front matter between '---' lines at the top",
          ".html": "as <title> or <meta name=\"...\" content=\"...\"> in <head>",
          ".txt": "as a 'Key: value' header line, then a blank line before the body"}


def check_metadata(raw: RawDocument, doc_id: str, manifest: Manifest | None = None) -> list[CorpusError]:
    """Every problem in one raw document's metadata and text, against the folder's manifest; [] when it
    makes a valid Document."""
    manifest = manifest or Manifest()
    problems: list[CorpusError] = list(raw.problems)
    meta = raw.meta
    declared = f" (declared in {manifest.where('required')})" if manifest.path else ""

    def fail(field: str, message: str) -> None:
        problems.append(CorpusError(raw.path, raw.meta_lines.get(field, 1), field, message))

    for field in manifest.required if not raw.problems else ():
        if not meta.get(field, "").strip():
            fail(field, f"missing; every document needs {', '.join(manifest.required)}{declared}; give it "
                 f"{_WHERE.get(raw.path.suffix, '')}")
    allowed = manifest.allowed
    for key in sorted(set(meta) - set(allowed)) if allowed is not None else ():
        fail(key, f"unknown metadata key; allowed: {', '.join(allowed)} (declared in {manifest.where('optional')}; "
             "add it to 'optional' there to allow it)")
    for field, values in manifest.facets.items():
        if meta.get(field, "").strip() and meta[field] not in values:
            fail(field, f"value {meta[field]!r} is not one of: {', '.join(values)} (declared under 'facets' in "
                 f"{manifest.where('facets')})")
    if meta.get("status", "").strip() and meta["status"] not in STATUSES:
        fail("status", f"value {meta['status']!r} is not one of: {', '.join(STATUSES)}")
    if meta.get("updated", "").strip() and not _DATE.fullmatch(meta["updated"]):
        fail("updated", f"value {meta['updated']!r} is not a date; write YYYY-MM-DD")
    status, superseded_by = meta.get("status") or "current", meta.get("superseded_by")
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


_HEADING = re.compile(r"#{1,6}\s+(\S.*)")


def derived_title(raw: RawDocument) -> str:
    """The title of a document without one: its first Markdown heading (.md, and .html's <h1>..<h6>), else
    its file name with '-' and '_' as spaces."""
    if raw.path.suffix != ".txt":
        for line in raw.text.split("\n"):
            match = _HEADING.fullmatch(line.strip())
            if match:
                return match.group(1).strip().rstrip("#").strip()
    return re.sub(r"[-_]+", " ", raw.path.stem).strip() or raw.path.stem


def to_document(raw: RawDocument, doc_id: str, manifest: Manifest | None = None) -> Document:
    """Check the metadata of one raw document and build the record. Raises CorpusError listing every problem."""
    problems = check_metadata(raw, doc_id, manifest)
    if problems:
        raise CorpusError.joined(problems)
    meta = raw.meta
    return Document(
        doc_id=doc_id,
        title=meta.get("title", "").strip() or derived_title(raw),
        text=raw.text,
        type=meta.get("type", ""),
        product=meta.get("product", ""),
        updated=meta.get("updated", ""),
        status=meta.get("status") or "current",
        superseded_by=meta.get("superseded_by") or None,
        canary=meta.get("canary") or None,
    )


def _all_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus folder not found; pass --corpus with the folder that holds "
                                "the .md/.html/.txt documents (the shipped one is corpus/)")
    return sorted(p for p in root.rglob("*") if p.is_file())


def corpus_files(root: Path | str) -> list[Path]:
    """Every document file under root, sorted; README.md at the top level is documentation, not corpus."""
    root = Path(root)
    return [p for p in _all_files(root) if p.suffix in EXTENSIONS and p.relative_to(root).as_posix() != "README.md"]


def skipped_files(root: Path | str) -> list[str]:
    """Files under root that are not loaded, as paths relative to root: every extension but .md, .html and
    .txt. Not counted: the top-level README.md, canaries.json and manifest.yaml, and hidden files and folders."""
    root = Path(root)
    out = []
    for path in _all_files(root):
        relative = path.relative_to(root)
        if path.suffix in EXTENSIONS or relative.as_posix() in NOT_DOCUMENTS:
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        out.append(relative.as_posix())
    return out


def describe_skipped(skipped: Sequence[str], shown: int = 10) -> str:
    """'skipped 3 files that are not .md, .html or .txt: a.pdf, b.docx, notes.rtf'; '' when there are none."""
    if not skipped:
        return ""
    names = ", ".join(skipped[:shown]) + (f" and {len(skipped) - shown} more" if len(skipped) > shown else "")
    noun = "file that is" if len(skipped) == 1 else "files that are"
    return f"skipped {len(skipped)} {noun} not .md, .html or .txt: {names}"


def did_you_mean(doc_id: str, doc_ids: Sequence[str]) -> str:
    """' did you mean 'x'?' naming the nearest doc id, or '' when none is near."""
    close = difflib.get_close_matches(doc_id, doc_ids, n=1, cutoff=0.6)
    return f" did you mean {close[0]!r}?" if close else ""


def doc_id_of(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def load_document(path: Path, root: Path, manifest: Manifest | None = None) -> Document:
    """One file as a Document, checked against `manifest` (default: root's manifest.yaml, if any). Raises
    CorpusError listing every problem in it.

    A Markdown file whose front matter cannot be read (no closing '---', invalid YAML) is one problem:
    past that point there is no telling metadata from text.
    """
    manifest = read_manifest(root) if manifest is None else manifest
    try:
        raw = READERS[path.suffix](path, manifest)
    except UnicodeDecodeError:
        raise CorpusError(path, 1, "(file)", "not UTF-8 text; save the file as UTF-8") from None
    return to_document(raw, doc_id_of(path, root), manifest)


def read_documents(root: Path | str) -> tuple[list[Document], list[CorpusError]]:
    """Every document that loads, and every problem in the files that do not (and in manifest.yaml)."""
    root = Path(root)
    files = corpus_files(root)
    try:
        manifest = read_manifest(root)
    except CorpusError as exc:
        return [], list(exc.problems)
    documents: list[Document] = []
    problems: list[CorpusError] = []
    for path in files:
        try:
            documents.append(load_document(path, root, manifest))
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
    """sha256 over every document's path and bytes, plus the canary registry and the manifest; changes when
    any file does."""
    root = Path(root)
    digest = hashlib.sha256()
    paths = corpus_files(root)
    paths += [root / name for name in (CANARIES_FILE, MANIFEST_FILE) if (root / name).is_file()]
    for path in paths:
        digest.update(doc_id_of(path, root).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
