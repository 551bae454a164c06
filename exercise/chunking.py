"""Split documents into chunks: fixed-size character windows, the simplest chunker that works.

A window ends wherever the character count says: mid-sentence, mid-table, far from the heading that
gave its text a meaning. Left out on purpose: headings, sentences, tables and lists (task 1).
"""

from __future__ import annotations

from .contracts import Chunk, Document


class FixedSizeChunker:
    """Windows of `size` characters; each starts `size - overlap` characters after the previous one."""

    def __init__(self, size: int = 800, overlap: int = 0):
        if size <= 0:
            raise ValueError(f"chunk size must be positive, got {size}; example: --config chunk_size=800")
        if not 0 <= overlap < size:
            raise ValueError(
                f"chunk overlap must be at least 0 and less than chunk_size={size}, got {overlap}; "
                "example: --config chunk_overlap=100"
            )
        self.size = size
        self.overlap = overlap

    def chunk(self, document: Document) -> list[Chunk]:
        # TODO(task 1): split on the document's structure and keep each chunk's heading path, e.g.
        #   "# Widgets\n...\n## Colours\nWidgets come in red and blue." ->
        #   Chunk(text="Widgets > Colours\nWidgets come in red and blue.", start=<offset of "Widgets come">, ...)
        #   Keep a table whole, or repeat its header row in every piece; start/end still point at document.text.
        text = document.text
        step = self.size - self.overlap
        chunks: list[Chunk] = []
        for start in range(0, len(text), step):
            end = min(start + self.size, len(text))
            chunks.append(Chunk(f"{document.doc_id}#{len(chunks)}", document.doc_id, text[start:end], start, end))
            if end == len(text):
                break
        return chunks
