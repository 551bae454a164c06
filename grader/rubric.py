"""The rubric: nine criteria, a one-line description of each level 1-4, and evidence pre-filled from data.

The interviewer rates each criterion from 1 to 4 in a JSON file ({criterion_id: {"score", "note"}});
read_ratings checks it and fold() returns the rubric rows with the ratings in them. Left out on
purpose: any automatic score. The evidence opens the conversation; the interviewer decides. What
strong answers sound like is in grader/INTERVIEWER.md, which the candidate's bundle leaves out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from grader.card import Scorecard
from grader.scorecard import SIDES, TAG_RECALL, build_note, index_line, usd
from grader.timeline import discipline_lines
from harness import metrics as m


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    levels: tuple[str, str, str, str]  # what 1, 2, 3 and 4 look like


CRITERIA = (
    Criterion("measurement_discipline", "Measurement discipline", (
        "No runs, or one at the end; claims rest on examples read by eye.",
        "Ran eval now and then; several changes measured together or not at all.",
        "Measured after each change and can say what each change moved.",
        "Measured every change, checked moves against noise (compare's intervals), kept the holdout gap small.")),
    Criterion("retrieval_vs_generation", "Telling retrieval failures from generation failures", (
        "Tunes the answer step without checking whether the evidence was retrieved.",
        "Knows the failure labels but fixes the wrong stage first.",
        "Locates the failing stage (failure labels, ragkata ask) before changing it.",
        "Separates the stages systematically, fixes root causes, predicts which counts will move.")),
    Criterion("chunking_rationale", "Chunking rationale", (
        "Left chunking alone, or changed the size with no reason.",
        "Tried sizes and chose by the number alone.",
        "Structure-aware chunks (headings, tables) with exact offsets and a stated trade-off.",
        "Chose from the documents and the model's 256-token window, measured options, knows the cost.")),
    Criterion("retrieval_design", "Retrieval design trade-offs", (
        "Kept one retriever without comparing.",
        "Switched retrievers, but cannot say which questions each one wins.",
        "Compared BM25 and dense per tag and fused them for a stated reason.",
        "Explains exact-id versus paraphrase wins, fusion depth and reranking, each one measured.")),
    Criterion("grounding_citations", "Grounding and citations", (
        "Cites wrong or invented chunks; superseded or injected text goes straight through.",
        "Citations mostly valid; superseded documents and injected instructions not handled.",
        "Citations cover the evidence; superseded documents demoted; document text treated as data.",
        "Every sentence supported by what it cites, shown by citation metrics and zero leaks.")),
    Criterion("abstention", "Knowing when to abstain", (
        "Never abstains, or abstains on everything.",
        "A hand-picked threshold; trades one error type for the other without noticing.",
        "Swept the threshold, reports both error types, chose a value with a reason.",
        f"Uses evidence beyond one score, keeps {m.FACT_RECALL}, explains the product trade-off.")),
    Criterion("latency_cost", "Latency and cost awareness", (
        "Never looked at latency or context size.",
        "Knows the numbers when asked; did nothing with them.",
        "Measured per stage; kept p95 and context size in check while improving quality.",
        "Found the dominant stage and fixed it; can price a request and say what they would cache.")),
    Criterion("code_quality", "Code quality", (
        "The pipeline raises, or the contract tests fail.",
        "Works, but hard to follow; no tests for new behaviour.",
        "Small readable changes within the contracts; tests pass.",
        "Clean changes with tests for new behaviour, knobs in Config, contracts and offsets kept.")),
    Criterion("explaining_results", "Explaining results", (
        "Numbers without reasons; cannot say what got worse.",
        "Explains the gains, not the losses or the noise.",
        "Says what moved, why, and what got worse, for each change.",
        "Explains accuracy, latency and cost trade-offs crisply; anticipated the holdout; names failure modes.")),
)
CRITERION_IDS = tuple(c.id for c in CRITERIA)


class RatingsError(ValueError):
    """A ratings file problem: the file, the field, the value and the fix."""

    def __init__(self, path: Path | str, field: str, message: str):
        self.path, self.field = str(path), field
        super().__init__(f"{path}: field '{field}': {message}")


# --- evidence --------------------------------------------------------------------------------------


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _metric(card: Scorecard, name: str, split: str = "dev") -> str:
    """"0.52 → 0.71 (reference 0.80)": starter → candidate, on one split."""
    row = next((r for r in card.headline["rows"] if r["metric"] == name), None)
    if row is None:
        return f"{name} -"
    v = row[split]
    return f"{name} {_f(v['starter'])} → {_f(v['candidate'])} (reference {_f(v['reference'])})"


def _label(card: Scorecard, label: str) -> str:
    c = card.failures["counts"][label]
    return f"{label} {c['starter']} → {c['candidate']} (reference {c['reference']})"


def _used_config(card: Scorecard, side: str) -> Mapping:
    build = card.sides[side].build
    return build.config if build else {}


def _config(card: Scorecard, *names: str) -> str:
    starter, cand = _used_config(card, "starter"), _used_config(card, "candidate")
    parts = [f"{n} {starter.get(n, '-')} → {cand.get(n, '-')}" + ("" if starter.get(n) != cand.get(n) else " (unchanged)")
             for n in names]
    extra = sorted(set(cand) - set(starter))
    return "config: " + ", ".join(parts) + (f"; new knobs: {', '.join(extra)}" if extra else "")


def _file(card: Scorecard, path: str) -> str:
    files = {f["path"]: f for f in card.changes.get("files", [])}
    f = files.get(path)
    return f"{path} unchanged" if f is None else f"{path} {f['status']} (+{f['added']} −{f['deleted']})"


def _tag(card: Scorecard, tag: str, name: str) -> str | None:
    row = next((r for r in card.per_tag if r["tag"] == tag), None)
    if row is None or name not in row["metrics"]:
        return None
    v = row["metrics"][name]  # split -> side -> value (scorecard.per_tag)
    return f"{tag}: {name} " + "; ".join(
        f"{split} {_f(v[split]['starter'])} → {_f(v[split]['candidate'])} (reference {_f(v[split]['reference'])})"
        for split in ("dev", "holdout") if row["n"].get(split))


def _latency(card: Scorecard, stage: str) -> str | None:
    row = card.latency["stages"].get(stage)
    if not row:
        return None
    cell = lambda side: f"{_f0(row[side]['p50'])}/{_f0(row[side]['p95'])}"  # noqa: E731
    return f"{stage} p50/p95 ms: {cell('starter')} → {cell('candidate')} (reference {cell('reference')})"


def _sides(values: Mapping, pattern: str) -> str:
    """"a → b (reference c)" for a per-side dict of numbers."""
    f = lambda side: "-" if values.get(side) is None else pattern.format(values[side])  # noqa: E731
    return f"{f('starter')} → {f('candidate')} (reference {f('reference')})"


def _f0(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _index(card: Scorecard) -> str:
    """How each side got its index: "index: built in 4.30 s → built in 3.10 s (reference built in 6.00 s)", with
    an arrow only between sides that got it the same way (scorecard.alike): a cache load is no speed-up."""
    lat = card.latency
    return _alike_sides(card, "index", {side: index_line(lat["build_seconds"][side], lat["cached"][side]) for side in SIDES})


def _pipeline_seconds(card: Scorecard) -> str:
    """The whole build_pipeline call per side, which holds the index build or cache load: compared as _index."""
    seconds = card.latency["pipeline_seconds"]
    return _alike_sides(card, "build_pipeline s (all of it)",
                        {side: "-" if seconds[side] is None else f"{seconds[side]:.1f}" for side in SIDES})


def _alike_sides(card: Scorecard, label: str, text: Mapping[str, str]) -> str:
    """"label: a → b (reference c)" where the sides' indexes were got the same way; else each side on its own,
    with the reason (scorecard.build_note), and no arrow."""
    note = build_note(card.latency["cached"])
    if not note:
        return f"{label}: {text['starter']} → {text['candidate']} (reference {text['reference']})"
    return f"{label}: " + "; ".join(f"{side} {text[side]}" for side in SIDES) + f" ({note})"


def _generation(card: Scorecard) -> list[str]:
    """The model each side called and what it cost per question; nothing when no side called one."""
    gen = card.generation
    if not any(gen["model"].values()):
        return []
    model = {side: f"{gen['model'][side]} at {gen['endpoint'][side]}" if gen["model"][side] else gen["generator"][side] or "-"
             for side in SIDES}
    tokens = {side: gen["tokens"]["prompt"][side] for side in SIDES}
    return [f"generator: {model['starter']} → {model['candidate']} (reference {model['reference']})",
            "prompt tokens per question p50: " + _sides({s: t["p50"] if t else None for s, t in tokens.items()}, "{:.0f}"),
            "cost per question USD: " + " → ".join(usd(gen["cost_per_question_usd"][s]) for s in ("starter", "candidate"))
            + f" (reference {usd(gen['cost_per_question_usd']['reference'])}); ask what they would cache or trim"]


def _biggest_moves(card: Scorecard, count: int = 2) -> list[str]:
    """The runs that moved one key metric most, one line per run."""
    moves = []
    for run in card.timeline.get("runs", []):
        if run.get("moved"):
            name, delta = max(run["moved"].items(), key=lambda item: abs(item[1]))
            moves.append((abs(delta), f"{run['run_id']}: {name} {delta:+.2f}"
                          + (f" after {', '.join(run['config_changes'])}" if run.get("config_changes") else
                             " after a code change" if run.get("new_commit") else "")))
    return [text for _, text in sorted(moves, reverse=True)[:count]]


def _gap_line(card: Scorecard, flagged: Sequence[str]) -> str:
    """What the holdout-gap test found (scorecard.headline's rule), and what it could not judge."""
    rows = card.headline["rows"]
    unjudged = [f"{r['metric']} ({r['why']})" for r in rows if r["flagged"] is None and r.get("why")]
    rest = f"; not judged: {', '.join(unjudged)}" if unjudged else ""
    if flagged:
        intervals = [f"{r['metric']} [{r['interval'][0]:+.2f}, {r['interval'][1]:+.2f}]" for r in rows if r["flagged"]]
        return ("holdout gap beyond the reference's, 95% interval above zero, on " + ", ".join(intervals)
                + ": ask what they tuned to the dev set" + rest)
    return "no holdout gap beyond the reference's that noise cannot explain: ask which result surprised them" + rest


def evidence(card: Scorecard) -> dict[str, list[str]]:
    """Evidence lines per criterion id, computed from the scorecard's data."""
    candidate = card.sides["candidate"]
    tests, changes = card.tests, card.changes
    totals = changes.get("totals") or {}
    test_files = [f["path"] for f in changes.get("files", []) if f["path"].startswith("tests/")]
    flagged = [r["metric"] for r in card.headline["rows"] if r["flagged"]]
    old = card.failures["superseded_citations"]
    lines = {
        "measurement_discipline": discipline_lines(card.timeline["discipline"]),
        "retrieval_vs_generation": [
            "; ".join(_label(card, label) for label in ("retrieval_miss", "context_miss")),
            "; ".join(_label(card, label) for label in ("generation_miss", "citation_miss", "ungrounded")),
            _metric(card, m.EVIDENCE_RECALL_AT[5]) + "; " + _metric(card, m.FACT_RECALL)],
        "chunking_rationale": [
            _config(card, "chunk_size", "chunk_overlap"), _file(card, "exercise/chunking.py"),
            "index chunks: " + _sides(card.latency["chunks"], "{}"),
            *filter(None, (_tag(card, t, TAG_RECALL) for t in ("deep-section", "table")))],
        "retrieval_design": [
            _config(card, "retriever", "bm25_weight", "dense_weight"), _file(card, "exercise/retrieval.py"),
            *filter(None, (_tag(card, t, TAG_RECALL) for t in ("exact-id", "paraphrase"))),
            _metric(card, m.MRR_AT_10)],
        "grounding_citations": [
            _metric(card, m.CITATION_PRECISION), _metric(card, m.CITATION_VALID),
            f"answers citing a superseded document: {old['starter']} → {old['candidate']} (reference {old['reference']})",
            _label(card, "citation_miss"), _metric(card, m.INJECTION_RESISTANCE)],
        "abstention": [
            _metric(card, m.ABSTENTION_F1) + "; " + _metric(card, m.ABSTENTION_PRECISION) + "; " + _metric(card, m.ABSTENTION_RECALL),
            *filter(None, (_tag(card, t, m.ABSTENTION_ACCURACY) for t in ("absent-entity", "unstated-value"))),
            _label(card, "abstained_wrongly") + "; " + _label(card, "answered_unanswerable"),
            _config(card, "abstain_threshold")],
        "latency_cost": [
            *filter(None, (_latency(card, stage) for stage in ("retrieve", "total"))),
            "mean context characters per question: " + _sides(card.latency["context_chars"], "{:.0f}"),
            _pipeline_seconds(card), _index(card),
            "peak memory MB: " + _sides(card.latency["peak_rss_mb"], "{:.0f}"),
            _config(card, "k_context", "context_budget_chars"), *_generation(card)],
        "code_quality": [
            f"{totals.get('files', 0)} file(s) changed, +{totals.get('added', 0)} −{totals.get('deleted', 0)} lines "
            f"({changes.get('method', 'changes unavailable')})",
            f"own tests: {tests.get('line', 'not run')}",
            f"test files added or changed: {', '.join(test_files) if test_files else 'none'}",
            f"questions that errored while grading: {candidate.errors} "
            f"({candidate.timeouts} timed out, {candidate.crashes} crashed the worker)"],
        "explaining_results": [
            *(f"biggest move in their session: {move}" for move in _biggest_moves(card)),
            _gap_line(card, flagged),
            "ask for one change that made a number worse, and why they kept or dropped it"],
    }
    return lines


def build_rubric(card: Scorecard) -> list[dict]:
    """The rubric section: every criterion with its levels, evidence, and empty score and note."""
    try:
        lines = evidence(card)
    except Exception as exc:  # evidence is a convenience; a gap in the data must not lose the rubric
        lines = {c.id: [f"evidence unavailable ({type(exc).__name__}: {exc})"] for c in CRITERIA}
    return [{"id": c.id, "title": c.title, "levels": {str(i + 1): text for i, text in enumerate(c.levels)},
             "evidence": lines.get(c.id, []), "score": None, "note": ""} for c in CRITERIA]


# --- ratings ---------------------------------------------------------------------------------------


def ratings_template() -> dict:
    return {c.id: {"score": None, "note": ""} for c in CRITERIA}


def read_ratings(path: Path | str) -> dict[str, dict]:
    """Load and check a ratings file: {criterion_id: {"score": 1-4 or null, "note": "..."}}; partial is fine."""
    path = Path(path)
    if not path.is_file():
        raise RatingsError(path, "(file)", "not found; start from ratings.template.json in the --out folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RatingsError(path, "(file)", f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                           "the file holds one object, e.g. {\"code_quality\": {\"score\": 3, \"note\": \"...\"}}") from None
    if not isinstance(data, dict):
        raise RatingsError(path, "(file)", f"expected a JSON object keyed by criterion id, got {type(data).__name__}")
    ratings = {}
    for key, entry in data.items():
        if key not in CRITERION_IDS:
            raise RatingsError(path, key, f"unknown criterion; use one of: {', '.join(CRITERION_IDS)}")
        if not isinstance(entry, dict):
            raise RatingsError(path, key, f"value {entry!r} must be an object like {{\"score\": 3, \"note\": \"...\"}}")
        unknown = sorted(set(entry) - {"score", "note"})
        if unknown:
            raise RatingsError(path, f"{key}.{unknown[0]}", "unknown field; each criterion takes only score and note")
        score = entry.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 4):
            raise RatingsError(path, f"{key}.score", f"value {score!r} is not a whole number from 1 to 4 "
                               "(or null for not rated)")
        note = entry.get("note", "")
        if not isinstance(note, str):
            raise RatingsError(path, f"{key}.note", f"value {note!r} must be a string")
        ratings[key] = {"score": score, "note": note}
    return ratings


def fold(rubric: Sequence[Mapping], ratings: Mapping[str, Mapping]) -> tuple[list[dict], dict]:
    """(the rubric rows with each rating's score and note in place, the totals); the input is left as it was.
    A criterion without a rating gets score None and an empty note."""
    rated = [(row, ratings.get(row["id"], {})) for row in rubric]
    rows = [{**row, "score": rating.get("score"), "note": rating.get("note", "")} for row, rating in rated]
    scores = [row["score"] for row in rows if row["score"] is not None]
    totals = {"rated": len(scores), "of": len(rows), "total": sum(scores), "max": 4 * len(scores),
              "mean": round(sum(scores) / len(scores), 2) if scores else None}
    return rows, totals
