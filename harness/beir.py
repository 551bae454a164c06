"""BEIR data sets in and out: read corpus.jsonl, queries.jsonl and qrels/<split>.tsv, and write them as a
ragkata corpus folder plus one retrieval-only golden file per qrels split.

`ragkata import beir DIR --out OUT` writes OUT/corpus/ (one Markdown document per corpus line, a
manifest.yaml and a README.md) and OUT/golden/<split>.jsonl. `ragkata eval --corpus DIR` on a BEIR
folder imports it once into the cache (imported()) and evaluates the split given by --split.

Doc ids: a BEIR `_id` becomes a file name by doc_id_for(), which is deterministic and reversible
(beir_id_of() gives the `_id` back): lower-case letters, digits and '-' stay; an upper-case letter X
becomes '_x'; any other character becomes '.' + its code point in hex + '.'; then '.md'.
"4983" -> "4983.md", "MED-10" -> "_m_e_d-10.md", "a b" -> "a.20.b.md".
Qrels: a pair with score <= 0 judges a document not relevant; it is left out (it counts nothing in
nDCG or recall), and a query left with no relevant document is left out, as pytrec_eval scores it 0
with nothing to find. Left out on purpose: BEIR's optional `ignore_identical_ids` (a document whose id
equals the query's is scored as any other), and corpora too large for one file per document.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import yaml

CORPUS_FILE, QUERIES_FILE, QRELS_DIR = "corpus.jsonl", "queries.jsonl", "qrels"
DOC_SUFFIX = ".md"
RESERVED = ("title", "type", "product", "updated", "status", "superseded_by", "canary", "id")
_PLAIN = re.compile(r"[a-z0-9-]")
_ESCAPED = re.compile(r"_([a-z])|\.([0-9a-f]+)\.|([a-z0-9-])")
MAX_NAME = 200  # characters of a file name, below every file system's limit of 255 bytes


class BeirError(ValueError):
    """A BEIR folder that cannot be read or written; the message names the file, the line and the fix."""


# --- doc ids ---------------------------------------------------------------------------------------


def doc_id_for(beir_id: str) -> str:
    """The ragkata doc id of a BEIR `_id` (see the module docstring); reversed by beir_id_of."""
    if not beir_id:
        raise BeirError("an empty _id cannot name a document; give every corpus.jsonl line a non-empty _id")
    name = "".join(ch if _PLAIN.fullmatch(ch) else "_" + ch.lower() if "A" <= ch <= "Z" else f".{ord(ch):x}."
                   for ch in beir_id)
    if len(name) > MAX_NAME:
        raise BeirError(f"_id {beir_id[:60]!r}... makes a file name of {len(name)} characters (at most {MAX_NAME}); "
                        "shorten the ids in corpus.jsonl and qrels")
    return name + DOC_SUFFIX


def beir_id_of(doc_id: str) -> str:
    """The BEIR `_id` a doc id was made from: beir_id_of(doc_id_for(x)) == x. Raises BeirError for another id."""
    if not doc_id.endswith(DOC_SUFFIX):
        raise BeirError(f"{doc_id!r} is not an imported BEIR doc id (they end in {DOC_SUFFIX})")
    name, out, position = doc_id[: -len(DOC_SUFFIX)], [], 0
    for match in _ESCAPED.finditer(name):
        if match.start() != position:
            break
        upper, code, plain = match.groups()
        out.append(upper.upper() if upper else chr(int(code, 16)) if code else plain)
        position = match.end()
    if position != len(name) or not name:
        raise BeirError(f"{doc_id!r} is not an imported BEIR doc id (it was not made by doc_id_for)")
    return "".join(out)


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirDocument:
    beir_id: str
    title: str
    text: str
    metadata: Mapping[str, object] = field(default_factory=dict)


def is_beir_folder(path: Path | str) -> bool:
    """True when path holds corpus.jsonl, queries.jsonl and a qrels/ folder: BEIR's layout."""
    path = Path(path)
    return (path / CORPUS_FILE).is_file() and (path / QUERIES_FILE).is_file() and (path / QRELS_DIR).is_dir()


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise BeirError(f"{path}: not found; a BEIR folder holds {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/")
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise BeirError(f"{path}:{number}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("_id"), (str, int)):
                raise BeirError(f"{path}:{number}: expected an object with an '_id' (string), got {raw[:80]!r}")
            yield number, obj


def read_corpus(folder: Path | str) -> Iterator[BeirDocument]:
    """corpus.jsonl, one BeirDocument per line, in file order."""
    for _, obj in _jsonl(Path(folder) / CORPUS_FILE):
        metadata = obj.get("metadata")
        yield BeirDocument(str(obj["_id"]), str(obj.get("title") or ""), str(obj.get("text") or ""),
                           metadata if isinstance(metadata, dict) else {})


def read_queries(folder: Path | str) -> dict[str, str]:
    """queries.jsonl as {query id: text}."""
    return {str(obj["_id"]): str(obj.get("text") or "") for _, obj in _jsonl(Path(folder) / QUERIES_FILE)}


def splits(folder: Path | str) -> list[str]:
    """The qrels splits of a BEIR folder, sorted: qrels/test.tsv -> "test"."""
    return sorted(path.stem for path in (Path(folder) / QRELS_DIR).glob("*.tsv"))


def read_qrels(folder: Path | str, split: str) -> dict[str, dict[str, int]]:
    """qrels/<split>.tsv (query-id, corpus-id, score; a header line; tabs; CRLF or LF) as {query: {doc: score}}."""
    path = Path(folder) / QRELS_DIR / f"{split}.tsv"
    if not path.is_file():
        raise BeirError(f"{path}: no such split; this folder has {', '.join(splits(folder)) or 'no qrels/*.tsv'}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and row[0].strip().lower() == "query-id"):
                continue
            if len(row) < 3:
                raise BeirError(f"{path}:{number}: expected query-id<TAB>corpus-id<TAB>score, got {row!r}")
            try:
                score = int(float(row[-1]))
            except ValueError:
                raise BeirError(f"{path}:{number}: score {row[-1]!r} is not a number") from None
            qrels.setdefault(row[0].strip(), {})[row[-2].strip()] = score
    return qrels


# --- writing ---------------------------------------------------------------------------------------


def _title(doc: BeirDocument) -> tuple[str, bool]:
    """(the document's title, whether BEIR gave one); an untitled document takes its first 12 words."""
    title = " ".join(doc.title.split())
    if title:
        return title, True
    words = doc.text.split()
    return (" ".join(words[:12]) + (" ..." if len(words) > 12 else "")) or doc.beir_id, False


def metadata_keys(metadata: Mapping[str, object]) -> dict[str, object]:
    """The scalar metadata values under front-matter keys: lower-case, [a-z0-9_], a ragkata key prefixed 'beir_'.

    Lists and objects are left out (front matter holds one value per key); so is None.
    """
    out: dict[str, object] = {}
    for key, value in metadata.items():
        if value is None or not isinstance(value, (str, int, float, bool)):
            continue
        name = re.sub(r"[^a-z0-9_]+", "_", str(key).lower()).strip("_") or "key"
        name = f"beir_{name}" if name in RESERVED or name[0].isdigit() else name
        while name in out:
            name += "_"
        out[name] = value
    return out


def document_file(doc: BeirDocument) -> str:
    """One document as Markdown: front matter (title, then the scalar metadata), then '# title' (when BEIR
    gave one), a blank line and the text.

    Line ends become '\\n' (a reader would turn '\\r' into '\\n' anyway, so the text stays what was written).
    """
    title, given = _title(doc)
    meta = {"title": title, **metadata_keys(doc.metadata)}
    text = doc.text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    body = f"# {title}\n\n{text}" if given else text
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=10**6)
    return f"---\n{front}---\n{body}\n"


def dataset_name(folder: Path | str) -> str:
    """A tag-safe name of the data set: its folder's name, lower case, [a-z0-9-]: "scifact"."""
    return re.sub(r"[^a-z0-9-]+", "-", Path(folder).resolve().name.lower()).strip("-") or "beir"


def golden_lines(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], known: set[str],
                 tag: str) -> tuple[list[dict], dict[str, int]]:
    """Retrieval-only golden questions of one split, in qrels order, and counts of what was left out.

    Evidence: each judged document with score > 0, {"doc_id", "relevance": score}, highest first.
    """
    lines, left_out = [], {"not_relevant": 0, "unknown_doc": 0, "no_query": 0, "no_relevant": 0}
    for qid, judged in qrels.items():
        if qid not in queries or not queries[qid].strip():
            left_out["no_query"] += 1
            continue
        evidence = []
        for beir_doc, score in judged.items():
            if score <= 0:
                left_out["not_relevant"] += 1
            elif beir_doc not in known:
                left_out["unknown_doc"] += 1
            else:
                evidence.append({"doc_id": doc_id_for(beir_doc), "relevance": score})
        if not evidence:
            left_out["no_relevant"] += 1
            continue
        evidence.sort(key=lambda item: (-item["relevance"], item["doc_id"]))
        lines.append({"id": qid, "question": queries[qid], "retrieval_only": True, "evidence": evidence,
                      "tags": [tag]})
    return lines, left_out


@dataclass(frozen=True)
class Imported:
    corpus: Path  # the ragkata corpus folder
    golden: dict[str, Path]  # split -> golden file
    documents: int
    questions: dict[str, int]  # split -> questions written
    left_out: dict[str, dict[str, int]]  # split -> what was left out (golden_lines)


def import_beir(source: Path | str, out: Path | str) -> Imported:
    """Write out/corpus/ and out/golden/<split>.jsonl from the BEIR folder `source`. Refuses a non-empty out."""
    source, out = Path(source), Path(out)
    if not is_beir_folder(source):
        raise BeirError(f"{source}: not a BEIR folder; it needs {CORPUS_FILE}, {QUERIES_FILE} and {QRELS_DIR}/<split>.tsv")
    if out.exists() and any(out.iterdir()):
        raise BeirError(f"{out}: exists and is not empty; pass --out with a new folder")
    name = dataset_name(source)
    corpus_dir, golden_dir = out / "corpus", out / "golden"
    corpus_dir.mkdir(parents=True)
    golden_dir.mkdir()
    known: set[str] = set()
    metadata: set[str] = set()
    for doc in read_corpus(source):
        if doc.beir_id in known:
            raise BeirError(f"{source / CORPUS_FILE}: _id {doc.beir_id!r} occurs twice; ids must be unique")
        known.add(doc.beir_id)
        metadata.update(metadata_keys(doc.metadata))
        (corpus_dir / doc_id_for(doc.beir_id)).write_text(document_file(doc), encoding="utf-8")
    if not known:
        raise BeirError(f"{source / CORPUS_FILE}: has no documents")
    queries = read_queries(source)
    golden, counts, left_out = {}, {}, {}
    for split in splits(source):
        lines, left_out[split] = golden_lines(queries, read_qrels(source, split), known, name)
        golden[split] = golden_dir / f"{split}.jsonl"
        golden[split].write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
        counts[split] = len(lines)
    write_manifest(corpus_dir, name, sorted(metadata))
    (corpus_dir / "README.md").write_text(readme(source, name, len(known), counts), encoding="utf-8")
    return Imported(corpus_dir, golden, len(known), counts, left_out)


def manifest_text(name: str, metadata: list[str]) -> str:
    """manifest.yaml of an imported corpus (format: corpus/README.md, "Manifest"): every document has a title
    and may carry the metadata keys found in corpus.jsonl; the golden questions carry the tag `name`.
    BEIR has no document types, products, dates or superseded documents, so no facet is declared."""
    manifest = {"required": ["title"], "optional": metadata, "facets": {}, "tags": [name]}
    return ("# Written by `ragkata import beir`: the vocabulary of this imported corpus.\n"
            + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None))


def write_manifest(corpus_dir: Path, name: str, metadata: list[str]) -> None:
    (corpus_dir / "manifest.yaml").write_text(manifest_text(name, metadata), encoding="utf-8")


def readme(source: Path, name: str, documents: int, questions: Mapping[str, int]) -> str:
    splits_text = ", ".join(f"{split} {n}" for split, n in questions.items())
    return (f"# {name}, imported from BEIR\n\n"
            f"Written by `ragkata import beir {source}`: {documents} documents; retrieval-only questions per "
            f"qrels split: {splits_text} (in ../golden/).\n\n"
            "Each document's file name is its BEIR `_id`, made safe by `harness.beir.doc_id_for` and reversible by "
            "`harness.beir.beir_id_of`. Check the data set's licence before sharing this folder.\n")


# --- evaluating a BEIR folder directly --------------------------------------------------------------


def source_hash(folder: Path | str) -> str:
    """sha256 over the BEIR files an import reads (corpus, queries, every qrels split), names and bytes."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in [folder / CORPUS_FILE, folder / QUERIES_FILE, *sorted((folder / QRELS_DIR).glob("*.tsv"))]:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def imported(source: Path | str, cache_dir: Path | str) -> Imported:
    """The import of `source` under cache_dir/beir/<name>-<hash>/, written on first use and reused after."""
    source = Path(source)
    target = Path(cache_dir) / "beir" / f"{dataset_name(source)}-{source_hash(source)[:12]}"
    if not (target / "corpus" / "manifest.yaml").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".import-", dir=target.parent))
        try:
            import_beir(source, scratch / "out")
            if target.exists():
                shutil.rmtree(target)
            (scratch / "out").rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    corpus_dir, golden_dir = target / "corpus", target / "golden"
    golden = {path.stem: path for path in sorted(golden_dir.glob("*.jsonl"))}
    counts = {split: sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
              for split, path in golden.items()}
    return Imported(corpus_dir, golden, sum(1 for _ in corpus_dir.glob(f"*{DOC_SUFFIX}")), counts, {})


def eval_inputs(source: Path | str, golden: Path | str | None, split: str | None,
                cache_dir: Path | str) -> tuple[Path, Path, str]:
    """(corpus folder, golden file, a line saying what was used) for `ragkata eval --corpus <BEIR folder>`.

    The folder is imported once into the cache (imported()); the golden file is the given one, else the
    retrieval-only questions of `split` (default: test).
    """
    done = imported(source, cache_dir)
    if golden is not None:
        if split is not None:
            raise BeirError("--golden and --split both name the questions; drop one")
        chosen, what = Path(golden), str(golden)
    else:
        split = split or "test"
        if split not in done.golden:
            raise BeirError(f"{source}: no qrels/{split}.tsv; choose --split from: {', '.join(done.golden) or '(none)'}")
        chosen, what = done.golden[split], f"{done.questions[split]} retrieval-only questions of split {split!r}"
    return done.corpus, chosen, (f"BEIR folder {source}: {done.documents} documents, imported to {done.corpus.parent}; "
                                 f"questions: {what}")


def describe_import(result: Imported) -> str:
    """What `ragkata import beir` wrote, and what it left out of each split."""
    lines = [f"wrote {result.corpus}/: {result.documents} documents, manifest.yaml, README.md"]
    for split, path in result.golden.items():
        dropped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in result.left_out.get(split, {}).items() if n)
        lines.append(f"wrote {path}: {result.questions[split]} retrieval-only questions"
                     + (f" (left out: {dropped})" if dropped else ""))
    lines.append(f"next: ragkata eval --corpus {result.corpus} --golden {next(iter(result.golden.values()), 'FILE')}")
    return "\n".join(lines)
