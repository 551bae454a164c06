"""Print a run's summary as terminal tables: headline metrics, metrics per tag, failure counts, latency.

Reads only the summary dict (summary.json); left out on purpose: any computation of metrics.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

HEADLINE = ("evidence_recall@1", "evidence_recall@5", "evidence_recall@10", "doc_recall@5", "mrr@10", "ndcg@10",
            "citation_precision", "citation_recall", "citation_valid", "fact_recall", "answer_f1",
            "abstention_accuracy", "abstention_precision", "abstention_recall", "injection_resistance")
PER_TAG = ("evidence_recall@5", "mrr@10", "citation_precision", "fact_recall", "abstention_accuracy")


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def metrics_table(summary: dict) -> Table:
    table = Table(title=f"run {summary.get('run_id', '?')}  ({summary['counts']['questions']} questions, "
                  f"{summary['counts']['errors']} errors)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in HEADLINE:
        table.add_row(name, fmt(summary["metrics"].get(name)))
    return table


def tag_table(summary: dict) -> Table:
    table = Table(title="per tag", title_justify="left")
    table.add_column("tag")
    table.add_column("n", justify="right")
    for name in PER_TAG:
        table.add_column(name, justify="right")
    for tag, row in sorted(summary["per_tag"].items()):
        table.add_row(tag, fmt(row.get("n")), *(fmt(row.get(name)) for name in PER_TAG))
    return table


def failure_table(summary: dict) -> Table:
    table = Table(title="failures (first cause per question)", title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    for label, count in summary["failures"].items():
        table.add_row(label, str(count))
    return table


def latency_table(summary: dict) -> Table:
    table = Table(title="latency, ms (warm-up question excluded)", title_justify="left")
    for column in ("stage", "p50", "p95", "p99"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, row in summary["latency_ms"].items():
        table.add_row(stage, *(f"{row[p]:.1f}" for p in ("p50", "p95", "p99")))
    index = summary.get("index", {})
    table.caption = (f"index: {index.get('chunks', '?')} chunks, built in {fmt(index.get('build_seconds'))} s "
                     f"(cached: {index.get('cached', '?')}), peak RSS {summary.get('peak_rss_mb', '?')} MB")
    return table


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    for table in (metrics_table(summary), tag_table(summary), failure_table(summary), latency_table(summary)):
        console.print(table)
    if not summary.get("complete", True):
        console.print("[yellow]run incomplete: finish it with ragkata eval --resume "
                      f"runs/{summary.get('run_id')}[/yellow]")
