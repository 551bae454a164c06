"""Split documents along their structure: headings, paragraphs, lists, tables and code, with the heading path.

Each chunk's text is "<title> > <section> > <subsection>" followed by a span of document.text, so both
retrievers see what a paragraph is about, and start/end still point at that span. Blocks are packed
into chunks of about `size` characters and are only cut when one block alone is too big: a table is
then cut between rows (each piece repeats the header), a list between items, a paragraph between
sentences. Left out on purpose: semantic (embedding-based) splitting, token counting, and overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exercise.contracts import Chunk, Document

_ATX = re.compile(r"(#{1,6})\s+(.+?)\s*#*\s*$")  # "## Colours"
_SETEXT = re.compile(r"(=+|-+)\s*$")  # a line of === or --- under a heading (plain-text documents)
_BARE_HEADING = re.compile(r"[^a-z]*[A-Z]{3}[^a-z]*|\d{4}-\d{2}-\d{2}|\d+(\.\d+)+( \(\d{4}-\d{2}-\d{2}\))?")
_FENCE = re.compile(r"\s*(```|~~~)")
_TABLE_RULE = re.compile(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*")  # | --- | --- |
_ITEM = re.compile(r"\s{0,3}([-*+]|\d{1,2}[.)])\s+")  # "- item", "2. step"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(*])")


@dataclass(frozen=True)
class Block:
    """A run of lines that belong together: one paragraph, list, table or code block, or a heading."""

    kind: str  # "heading", "paragraph", "list", "table", "code"
    start: int  # offsets into document.text
    end: int
    path: tuple[str, ...]  # headings above this block, outermost first (for a heading: including itself)


def _lines(text: str) -> list[tuple[int, str]]:
    """(offset, line) for every line, without its newline."""
    out, offset = [], 0
    for line in text.split("\n"):
        out.append((offset, line))
        offset += len(line) + 1
    return out


def _kind(line: str) -> str:
    stripped = line.strip()
    if stripped.startswith("|"):
        return "table"
    if _ITEM.match(line):
        return "list"
    return "paragraph"


def parse_blocks(text: str) -> list[Block]:
    """Headings (ATX, setext, bare upper-case lines) and the blocks between blank lines, with their heading path."""
    lines = _lines(text)
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []  # (level, title) stack
    i = 0

    def heading(level: int, title: str, start: int, end: int) -> None:
        while headings and headings[-1][0] >= level:
            headings.pop()
        headings.append((level, title.strip().strip("*").strip()))
        blocks.append(Block("heading", start, end, tuple(t for _, t in headings)))

    while i < len(lines):
        offset, line = lines[i]
        if not line.strip():
            i += 1
            continue
        if _FENCE.match(line):  # a fenced code block runs to its closing fence, blank lines and "#" included
            j = i + 1
            while j < len(lines) and not _FENCE.match(lines[j][1]):
                j += 1
            j = min(j, len(lines) - 1)
            blocks.append(Block("code", offset, lines[j][0] + len(lines[j][1]), tuple(t for _, t in headings)))
            i = j + 1
            continue
        atx = _ATX.match(line)
        if atx:
            heading(len(atx.group(1)), atx.group(2), offset, offset + len(line))
            i += 1
            continue
        after = lines[i + 1][1] if i + 1 < len(lines) else ""
        before_blank = i == 0 or not lines[i - 1][1].strip()
        if before_blank and _SETEXT.fullmatch(after.strip()) and len(after.strip()) >= 3 and len(line) <= 100:
            heading(1 if after.strip()[0] == "=" else 2, line, offset, lines[i + 1][0] + len(after))
            i += 2
            continue
        after_blank = not after.strip()
        if before_blank and after_blank and len(line) <= 80 and _BARE_HEADING.fullmatch(line.strip()):
            heading(max(2, (headings[-1][0] if headings else 1)), line, offset, offset + len(line))
            i += 1
            continue
        # A block: consecutive non-blank lines of one kind, up to a blank line, a heading or a fence.
        #   A table ends where its rows do; a paragraph ends where a list starts; a list item keeps its
        #   wrapped continuation lines.
        kind, j = _kind(line), i + 1
        while j < len(lines) and lines[j][1].strip() and not _ATX.match(lines[j][1]) and not _FENCE.match(lines[j][1]):
            following = _kind(lines[j][1])
            if (kind == "table") != (following == "table") or (kind == "paragraph" and following == "list"):
                break
            j += 1
        last_offset, last = lines[j - 1]
        blocks.append(Block(kind, offset, last_offset + len(last), tuple(t for _, t in headings)))
        i = j
    return blocks


def _pieces(text: str, block: Block, size: int) -> list[tuple[int, int, str]]:
    """Cut one block that is longer than `size` into (start, end, header) pieces at its natural joints.

    Tables are cut between rows and every piece after the first repeats the header rows (header is
    the text to insert before the piece); lists between items; paragraphs and code between
    sentences or lines.
    """
    body = text[block.start : block.end]
    if block.kind == "table":
        rows = _lines(body)
        head = 2 if len(rows) > 1 and _TABLE_RULE.fullmatch(rows[1][1].strip()) else 1
        header = "\n".join(r for _, r in rows[:head])
        units = [(block.start + o, block.start + o + len(r)) for o, r in rows[head:]]
        if not units:
            return [(block.start, block.end, "")]
        units[0] = (block.start, units[0][1])  # the first piece carries the real header
    elif block.kind == "list":
        starts = [o for o, line in _lines(body) if _ITEM.match(line)] or [0]
        ends = starts[1:] + [len(body)]
        header = ""
        units = [(block.start + s, block.start + len(body[:e].rstrip())) for s, e in zip(starts, ends)]
    else:
        header = ""
        cuts = [0] + [m.end() for m in (_SENTENCE_END if block.kind == "paragraph" else re.compile(r"\n")).finditer(body)]
        units = [(block.start + s, block.start + len(body[:e].rstrip())) for s, e in zip(cuts, cuts[1:] + [len(body)])]
    pieces: list[tuple[int, int, str]] = []
    for start, end in units:
        if pieces and end - pieces[-1][0] + len(pieces[-1][2]) <= size:
            pieces[-1] = (pieces[-1][0], end, pieces[-1][2])
        else:
            pieces.append((start, end, header if pieces else ""))
    return pieces


@dataclass
class _OpenChunk:
    """The chunk being filled: its span, a header to repeat before it, its heading path, and whether it
    holds anything besides headings."""

    start: int
    end: int
    header: str
    path: tuple[str, ...]
    has_content: bool


class StructureChunker:
    """Sections packed into chunks of at most `size` characters; a block is cut only when it alone is too big.

    A heading closes the open chunk once that chunk holds at least half of `size`; smaller sections
    are merged with the next one, so a two-line section does not become a chunk of its own.
    """

    MERGE_BELOW = 0.5  # share of `size` under which a chunk keeps growing across a heading

    def __init__(self, size: int = 2000):
        if size < 100:
            raise ValueError(f"chunk size must be at least 100 characters, got {size}; example: --config chunk_size=2000")
        self.size = size

    def chunk(self, document: Document) -> list[Chunk]:
        # task 1: split on headings, paragraphs, lists and tables; prefix each chunk with its heading path.
        #   Heading lines stay in the spans, so consecutive chunks tile the document without gaps.
        text, chunks = document.text, []
        current: _OpenChunk | None = None

        def close() -> None:
            if current is not None:
                body = (current.header + "\n" if current.header else "") + text[current.start : current.end]
                prefix = heading_prefix(document.title, current.path)
                chunks.append(Chunk(f"{document.doc_id}#{len(chunks)}", document.doc_id, f"{prefix}\n{body}",
                                    current.start, current.end))

        for block in parse_blocks(text):
            if block.kind == "heading":
                if current is not None and current.has_content and current.end - current.start >= self.MERGE_BELOW * self.size:
                    close()
                    current = None
                if current is None:
                    current = _OpenChunk(block.start, block.end, "", block.path, False)
                else:
                    current.end = block.end
                continue
            whole = block.end - block.start <= self.size
            for start, end, header in [(block.start, block.end, "")] if whole else _pieces(text, block, self.size):
                if current is not None and current.has_content and (header or end - current.start + len(current.header) > self.size):
                    close()
                    current = None
                if current is None:
                    current = _OpenChunk(start, end, header, block.path, True)
                else:
                    current.path = _common(current.path, block.path) if current.has_content else block.path
                    current.end, current.has_content = end, True
        close()
        return chunks


def heading_prefix(title: str, path: tuple[str, ...]) -> str:
    """"Title > Section > Subsection"; a first heading that repeats the title is not repeated."""
    parts = [title] + [h for h in path if _norm(h) != _norm(title)]
    return " > ".join(dict.fromkeys(p for p in parts if p))


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text).strip().casefold()


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The heading path two blocks share: ("A", "B", "C") and ("A", "B", "D") -> ("A", "B")."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
