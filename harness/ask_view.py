"""What `ragkata ask` prints: the top hits, the whole context (each chunk's rank, id, score and full text, in the
order the generator saw them), the answer, and each citation with the context number it points at.

In a terminal, with a table and headings; piped, plain lines (no box drawing, no colour), so it can be read
in a file or diffed. Imports only rich, so a warm ask starts fast. Left out on purpose: metrics and scoring.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def score_text(score: float) -> str:
    return f"{score:.3f}" if math.isfinite(score) else str(score)


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def indented(text: str, prefix: str = "    ") -> str:
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    return "\n".join(prefix + line if line.strip() else "" for line in lines)


def print_ask(answer: Any, hits: int, console: Console, plain: bool | None = None, note: str = "") -> None:
    """Print one answer; plain (default: when the console is not a terminal) writes text without markup."""
    plain = not console.is_terminal if plain is None else plain
    out = (lambda text="": console.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)) if plain \
        else (lambda text="": console.print(text, highlight=False, soft_wrap=False, emoji=False))
    head = (lambda text: out(text)) if plain else (lambda text: out(f"[bold]{escape(text)}[/bold]"))
    safe = (lambda text: text) if plain else escape

    retrieved = list(answer.retrieved)
    rank_of = {hit.chunk.chunk_id: (rank, hit) for rank, hit in reversed(list(enumerate(retrieved, start=1)))}
    context_no = {cid: n for n, cid in reversed(list(enumerate(answer.context, start=1)))}

    shown = retrieved[:hits]
    head(f"retrieved (top {len(shown)} of {len(retrieved)})")
    if plain:
        width = max((len(hit.chunk.chunk_id) for hit in shown), default=5)
        out(f"  {'rank':>4}  {'score':>7}  {'chunk':<{width}}  ctx  text")
        for rank, hit in enumerate(shown, start=1):
            ctx = f"[{context_no[hit.chunk.chunk_id]}]" if hit.chunk.chunk_id in context_no else ""
            out(f"  {rank:>4}  {score_text(hit.score):>7}  {hit.chunk.chunk_id:<{width}}  {ctx:<3}  "
                f"{one_line(hit.chunk.text, 90)}")
    else:
        table = Table(show_edge=False, pad_edge=False)
        for column in ("rank", "score", "chunk", "ctx", "text"):
            table.add_column(column, no_wrap=column != "text", justify="right" if column in ("rank", "score") else "left")
        for rank, hit in enumerate(shown, start=1):
            ctx = f"[{context_no[hit.chunk.chunk_id]}]" if hit.chunk.chunk_id in context_no else ""
            table.add_row(str(rank), score_text(hit.score), escape(hit.chunk.chunk_id), ctx,
                          escape(one_line(hit.chunk.text, 110)))
        console.print(table)

    out()
    head(f"context ({len(answer.context)} chunks, in the order the generator saw them)")
    for n, cid in enumerate(answer.context, start=1):
        found = rank_of.get(cid)
        where = f"rank {found[0]}, score {score_text(found[1].score)}" if found else "not among the retrieved hits"
        out(f"[{n}] {safe(cid)}  ({where})" if plain else f"[bold cyan]\\[{n}][/bold cyan] {escape(cid)}  [dim]({where})[/dim]")
        if found:
            out(safe(indented(found[1].chunk.text)))
        out()

    head(f"answer{' (abstained)' if answer.abstained else ''}")
    out(safe(indented(answer.text or "(empty)")))
    out()
    head("citations")
    if not answer.citations:
        out("    (none)")
    for cid in answer.citations:
        if cid in context_no:
            out(f"    [{context_no[cid]}] {safe(cid)}")
        else:
            warning = f"    {cid}: not in the context, so citation_valid counts it as invalid"
            out(warning if plain else f"[yellow]{escape(warning)}[/yellow]")
    out()
    latency = ", ".join(f"{k} {float(v):.1f}" for k, v in dict(answer.latency_ms).items())
    usage = getattr(answer, "usage", None)
    tokens = f"; {usage.prompt_tokens}+{usage.completion_tokens} tokens" if usage is not None and usage.calls else ""
    out(f"latency ms: {latency}{tokens}{note}")
