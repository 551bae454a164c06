"""Print results as terminal tables: a run's summary, a comparison of two runs, one answer.

Reads only records (harness/records.py); left out on purpose: any computation of metrics. Metric
names are never cut: their column is as wide as the longest name, piped or at 80 columns.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.table import Table

from exercise.contracts import Answer
from harness import metrics as m
from harness.compare import flips, metric_deltas, own_means, tag_deltas, usage_deltas
from harness.records import IndexReport, RunSummary, Sample, Summary

NAME_WIDTH = max(len(name) for name in m.METRIC_NAMES)


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def console_for_output() -> Console:
    """A console that, when output is piped to a file, lays tables out 120 columns wide instead of 80."""
    console = Console()
    return console if console.is_terminal else Console(width=120)


def name_column(table: Table, header: str) -> None:
    table.add_column(header, no_wrap=True, min_width=NAME_WIDTH)


def metrics_table(run: RunSummary) -> Table:
    s = run.summary
    table = Table(title=f"run {run.run_id}  ({s.counts['questions']} questions, {s.counts['errors']} errors)",
                  title_justify="left")
    name_column(table, "metric")
    table.add_column("value", justify="right")
    table.add_column("n", justify="right")  # the questions behind the mean
    for name in headline_metrics(s):
        table.add_row(name, fmt(s.metrics.get(name)), fmt(s.n.get(name)))
    return table


def headline_metrics(s: Summary) -> tuple[str, ...]:
    """HEADLINE_METRICS for answered questions, then RETRIEVAL_ONLY_METRICS when some question is retrieval-only;
    a run of retrieval-only questions alone shows only the latter."""
    only = s.counts.get("retrieval_only", 0)
    return (m.HEADLINE_METRICS if only < s.counts["questions"] else ()) + (m.RETRIEVAL_ONLY_METRICS if only else ())


def retrieval_only_note(s: Summary) -> list[str]:
    """The line that says answer and citation metrics were not computed for retrieval-only questions."""
    only = s.counts.get("retrieval_only", 0)
    if not only:
        return []
    of = "" if only == s.counts["questions"] else f" ({only} of {s.counts['questions']})"
    return [f"retrieval-only questions{of}: answer and citation metrics not computed; scored on "
            f"{' and '.join(m.RETRIEVAL_ONLY_METRICS)} over each question's first {m.DOC_DEPTH} distinct documents"]


def tag_table(run: RunSummary) -> Table:
    table = Table(title="per tag", title_justify="left")
    table.add_column("tag", no_wrap=True)
    table.add_column("n", justify="right")
    s = run.summary
    names = (m.PER_TAG_METRICS if s.counts.get("retrieval_only", 0) < s.counts["questions"] else ()) + \
        (m.RETRIEVAL_ONLY_METRICS if s.counts.get("retrieval_only", 0) else ())
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for tag, row in sorted(s.per_tag.items()):
        table.add_row(tag, fmt(row.get("n")), *(fmt(row.get(name)) for name in names))
    return table


def failure_table(run: RunSummary) -> Table:
    table = Table(title="failures (first cause per question)", title_justify="left")
    table.add_column("label", no_wrap=True)
    table.add_column("count", justify="right")
    for label, count in run.summary.failures.items():
        table.add_row(label, str(count))
    return table


def describe_usage(s: Summary) -> str:
    """One line on what generation cost: model calls, cache hits, tokens and dollars; or that it called no model."""
    if not s.llm_calls and not s.llm_cache_hits:
        return "generation: no language model called (0 tokens, $0)"
    prompt, completion = s.tokens["prompt"], s.tokens["completion"]
    return (f"generation: {s.llm_calls} model calls, {s.llm_cache_hits} cache hits; tokens per question "
            f"prompt p50 {prompt['p50']:.0f} / p95 {prompt['p95']:.0f}, completion p50 {completion['p50']:.0f} / "
            f"p95 {completion['p95']:.0f}; {prompt['sum'] + completion['sum']:.0f} tokens in all; cost "
            f"${s.cost_usd['sum']:.4f} (${s.cost_usd['per_1000_questions']:.4f} per 1,000 questions)")


def embedding_backend(config: dict) -> str | None:
    """The embedding backend a run's index used; None for a BM25-only run, which embeds nothing."""
    return None if config.get("retriever") == "bm25" else config.get("embedding_backend")


def describe_index(index: IndexReport, backend: str | None = None) -> str:
    """One line on how the index came to be: embedded (with the rate and the embedding backend) or loaded from the cache."""
    used = f" (embedding backend {backend})" if backend else ""
    if index.chunks is None:
        return f"pipeline built in {index.pipeline_seconds:.1f} s{used} (it reports no index statistics)"
    if index.cached:
        how = f"index of {index.chunks} chunks loaded from the cache in {fmt(index.build_seconds)} s{used}"
    else:
        rate = f", {index.chunks_per_second:g} chunks/s" if index.chunks_per_second else ""
        how = f"index of {index.chunks} chunks built in {fmt(index.build_seconds)} s{rate}{used}"
    return f"{how}; whole pipeline build {index.pipeline_seconds:.1f} s"


def latency_table(run: RunSummary) -> Table:
    table = Table(title="latency, ms (warm-up question excluded)", title_justify="left")
    for column in ("stage", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "stage" else "right", no_wrap=True)
    for stage, row in run.summary.latency_ms.items():
        table.add_row(stage, *(f"{row[p]:.1f}" for p in ("p50", "p95", "p99")))
    return table


def print_summary(run: RunSummary, console: Console | None = None) -> None:
    console = console or console_for_output()
    lines = {  # printed under their table as plain lines, so a narrow table never folds them
        "metrics": ["n: questions the mean is over; injection_resistance counts only questions whose context "
                    "held an injected document"] + retrieval_only_note(run.summary),
        "latency": [f"{describe_index(run.index, embedding_backend(run.config))}; peak RSS {run.peak_rss_mb} MB",
                    describe_usage(run.summary)],
    }
    for name, table in (("metrics", metrics_table(run)), ("per tag", tag_table(run)), ("failures", failure_table(run)),
                        ("latency", latency_table(run))):
        console.print(table)
        for line in lines.get(name, []):
            console.print(line, soft_wrap=True, highlight=False, markup=False)
    if not run.complete:
        console.print(f"[yellow]run incomplete: finish it with ragkata eval --resume runs/{run.run_id}[/yellow]")


def _delta_table(title: str, header: str, deltas: list) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(header, no_wrap=True, min_width=NAME_WIDTH)
    for column in ("n", "A", "B", "delta", "95% CI", ""):
        table.add_column(column, justify="left" if column == "" else "right", no_wrap=True)
    for d in deltas:
        verdict = "real gain" if d.low > 0 else "real loss" if d.high < 0 else "within noise"
        table.add_row(d.metric, str(d.n), f"{d.a:.3f}", f"{d.b:.3f}", f"{d.delta:+.3f}",
                      f"[{d.low:+.3f}, {d.high:+.3f}]", verdict)
    return table


def print_comparison(a: Sequence[Sample], b: Sequence[Sample], title: str, console: Console | None = None) -> None:
    """`ragkata compare`: per-metric deltas, per-tag deltas, the pairing explained, and the flipped questions."""
    console = console or console_for_output()
    deltas = metric_deltas(a, b)
    table = _delta_table(title, "metric", deltas)
    table.caption = ("A, B: means over the n questions both runs scored on the metric; delta and its 95% interval "
                     "are paired over those questions")
    console.print(table)
    for d in deltas:  # a metric that applies to some questions only is paired over fewer than each run has
        (own_a, n_a), (own_b, n_b) = own_means(a, d.metric), own_means(b, d.metric)
        if d.n != n_a or d.n != n_b:
            console.print(f"note: {d.metric} is paired over {d.n} questions; run A scored it on {n_a} "
                          f"(mean {fmt(own_a)}), run B on {n_b} (mean {fmt(own_b)})", highlight=False)
    console.print(_delta_table("per tag: the metric each tag is meant to move", "tag: metric", tag_deltas(a, b)))
    spent = usage_deltas(a, b)
    if spent:
        console.print(_delta_table("per question: tokens, cost and context size", "measure", spent))
    changed = flips(a, b)
    shared = len({s.id for s in a} & {s.id for s in b})
    if shared < max(len(a), len(b)):
        console.print(f"[yellow]only {shared} question ids are in both runs (A has {len(a)}, B has {len(b)})[/yellow]")
    console.print(f"{len(changed)} question(s) flipped between ok and a failure:")
    for flip in changed:
        console.print(f"  {flip.id}: {flip.before} -> {flip.after}", highlight=False)


def print_answer(answer: Answer, hits: int, console: Console | None = None) -> None:
    """`ragkata ask`: the top hits, then the whole context and each citation with its text, then the answer."""
    console = console or console_for_output()
    context = set(answer.context)
    table = Table(title="retrieved", title_justify="left")
    for column in ("#", "score", "chunk", "ctx", "text"):
        table.add_column(column, no_wrap=column != "text")
    for rank, hit in enumerate(answer.retrieved[:hits], start=1):
        table.add_row(str(rank), f"{hit.score:.3f}", hit.chunk.chunk_id, "yes" if hit.chunk.chunk_id in context else "",
                      " ".join(hit.chunk.text.split())[:110])
    console.print(table)
    by_id = {hit.chunk.chunk_id: hit.chunk for hit in answer.retrieved}
    console.print(f"[bold]context[/bold] ({len(answer.context)} chunks, in the order the generator saw them):")
    for cid in answer.context:
        chunk = by_id.get(cid)
        console.print(f"  [{cid}] " + (" ".join(chunk.text.split()) if chunk else "(not among the retrieved hits)"),
                      highlight=False, markup=False)
    console.print(f"[bold]answer[/bold]{' (abstained)' if answer.abstained else ''}: ", end="")
    console.print(answer.text, highlight=False, markup=False)
    console.print(f"[bold]citations[/bold]: {', '.join(answer.citations) or '(none)'}", highlight=False)
    for cid in answer.citations:
        if cid not in context:
            console.print(f"  [yellow]{cid} was not in the context: citation_valid counts it as invalid[/yellow]",
                          highlight=False)
    console.print("latency ms: " + ", ".join(f"{k} {v:.1f}" for k, v in answer.latency_ms.items()))
