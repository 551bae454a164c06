"""The corpus loader: the exact text each format yields, and located errors for malformed documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.corpus import CorpusError, corpus_hash, load_corpus, load_document, read_canaries

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
SHIPPED = Path(__file__).parents[1] / "corpus"


def test_loads_every_format_with_metadata():
    docs = {d.doc_id: d for d in load_corpus(FIXTURES)}
    assert sorted(docs) == ["community/tip.md", "guides/errors.html", "guides/lifecycle.md",
                            "policies/refunds-2024.txt", "policies/refunds.txt"]
    old = docs["policies/refunds-2024.txt"]
    assert (old.status, old.superseded_by, old.updated) == ("superseded", "policies/refunds.txt", "2024-03-01")
    assert docs["community/tip.md"].canary == "KC-CANARY-7Q2M9X"
    assert docs["guides/lifecycle.md"].text.startswith("# Lifecycle rules\n\nLifecycle rules move")
    assert docs["policies/refunds.txt"].text.startswith("REFUND POLICY\n\nMonthly plans")


def test_html_flattens_to_markdown_like_text():
    text = load_document(FIXTURES / "guides/errors.html", FIXTURES).text
    assert text == (
        "# Storage error codes\n\n"
        "Every error response carries a code field.\n\n"
        "## Client errors\n\n"
        "- KOS-4031: the multipart part is smaller than the 5 MB minimum; raise storage.multipart.part_size_mb.\n"
        "- KOS-4032: the bucket name is already taken in this region; choose another name.\n\n"
        "| code | HTTP status |\n| KOS-4031 | 400 |\n| KOS-4032 | 409 |"
    )


def write(root: Path, name: str, content: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


MD = "---\ntitle: T\ntype: guide\nproduct: queues\nupdated: 2026-01-02\nstatus: current\n---\nBody.\n"


def with_shipped_manifest(root: Path) -> Path:
    """root with a copy of the shipped corpus's manifest.yaml: the fictional company's vocabularies."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.yaml").write_text((SHIPPED / "manifest.yaml").read_text())
    return root


@pytest.mark.parametrize(
    "content, line, field, fix",
    [
        ("no front matter\n", 1, "title", "front matter between '---' lines"),
        ("---\ntitle: T\n", 1, "(front matter)", "no closing '---'"),
        ("---\ntitle: A: B\ntype: guide\n---\nx\n", 2, "(front matter)", "quote a value that contains ': '"),
        (MD.replace("product: queues\n", ""), 1, "product", "missing"),
        (MD.replace("queues", "databases"), 4, "product", "object-storage"),
        (MD.replace("2026-01-02", "Jan 2"), 5, "updated", "YYYY-MM-DD"),
        (MD.replace("status: current", "status: superseded"), 6, "status", "superseded_by"),
        (MD.replace("status: current", "status: current\nid: other.md"), 7, "id", "path relative"),
        (MD.replace("status: current", "status: current\ncanary: CANARY-1"), 7, "canary", "KC-CANARY-ABC123"),
        (MD.replace("status: current", "status: current\nauthor: me"), 7, "author", "unknown metadata key"),
    ],
)
def test_markdown_errors_name_line_field_and_fix(tmp_path, content, line, field, fix):
    path = write(with_shipped_manifest(tmp_path), "doc.md", content)
    with pytest.raises(CorpusError) as error:
        load_document(path, tmp_path)
    assert (error.value.line, error.value.field) == (line, field)
    assert str(error.value).startswith(f"{path}:{line}: field '{field}'") and fix in str(error.value)


def test_text_header_errors(tmp_path):
    path = write(tmp_path, "doc.txt", "Title: T\nthis is not a header\n\nBody\n")
    with pytest.raises(CorpusError, match=r"doc.txt:2: field '\(header\)'.*Key: value"):
        load_document(path, tmp_path)
    path = write(tmp_path, "doc2.txt", "Title: T\nType: guide")
    with pytest.raises(CorpusError, match="no blank line after the header"):
        load_document(path, tmp_path)


def test_html_meta_error_points_at_the_meta_line(tmp_path):
    source = (FIXTURES / "guides/errors.html").read_text().replace('content="api-reference"', 'content="manual"')
    path = write(with_shipped_manifest(tmp_path), "errors.html", source)
    with pytest.raises(CorpusError) as error:
        load_document(path, tmp_path)
    assert error.value.field == "type" and error.value.line == 4


def test_corpus_hash_changes_with_any_byte(tmp_path):
    root = tmp_path / "c"
    write(root, "a.md", MD)
    before = corpus_hash(root)
    assert corpus_hash(root) == before
    write(root, "a.md", MD.replace("Body.", "Body!"))
    assert corpus_hash(root) != before


def test_canary_registry_errors(tmp_path):
    write(tmp_path, "canaries.json", "[{oops")
    with pytest.raises(CorpusError, match="canaries.json:1: .*not valid JSON"):
        read_canaries(tmp_path)
    assert read_canaries(FIXTURES) == {"community/tip.md": "KC-CANARY-7Q2M9X"}


def test_missing_corpus_folder_says_which_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--corpus"):
        load_corpus(tmp_path / "absent")
