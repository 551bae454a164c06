"""The scorecard's sections 1-4, computed from scored samples: headline, per tag, failures, latency and cost.

Each function takes the three sides' Samples or Summaries (starter, candidate, reference; records from
harness/records.py) and returns plain JSON data; the Markdown and HTML renderers only lay it out.
Left out on purpose: running pipelines (grade.py), the session timeline (timeline.py), the rubric
(rubric.py) and the Scorecard record itself (card.py).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from exercise.contracts import SCORED_DEPTH, Chunk, Document
from grader.card import Scorecard, Side
from grader.gaps import MIN_HOLDOUT_N, RESAMPLES, SEED, gap_interval
from grader.sandbox import endpoint_host, uses_llm
from harness import metrics as m
from harness.golden import GoldenQuestion
from harness.metrics import KEY_METRICS, tag_metric
from harness.records import RankedHit, Sample, Summary
from harness.scoring import FAILURE_LABELS, SourceCorpus

SIDES = ("starter", "candidate", "reference")
SPLITS = ("dev", "holdout")
TAG_RECALL = m.EVIDENCE_RECALL_AT[5]  # the retrieval metric shown beside each tag's own metric
EXAMPLES_PER_LABEL = 3
SNIPPET = 280

Samples = Mapping[str, Mapping[str, Sequence[Sample]]]  # side -> split -> scored samples
Summaries = Mapping[str, Mapping[str, Summary | None]]  # side -> split or "all" -> summary (None: no questions)


def value(summary: Summary | None, name: str) -> float | None:
    return summary.metrics.get(name) if summary else None


def headline(summaries: Summaries, samples: Samples, unbuilt: Sequence[str] = ()) -> dict:
    """Key metrics per side on dev and holdout with their n, and the dev-minus-holdout gap judged against the reference's.

    A gap is flagged when the paired bootstrap 95% interval of (candidate gap − reference gap) lies
    above zero (grader/gaps.py, on the scored `samples`), and judged only when the candidate's value on
    holdout rests on at least MIN_HOLDOUT_N questions. flagged is None, and `why` says why, when it
    cannot be judged: too few holdout questions, a value missing, or the reference among the `unbuilt`
    sides (its numbers are only errors). The abstention rows also give, per split, what never abstaining
    scores (`baseline`): for abstention_accuracy the share of the candidate's questions that are
    answerable, for abstention_f1, abstention_precision and abstention_recall 0.0.
    """
    rows = []
    for name in KEY_METRICS:
        row: dict = {"metric": name}
        for split in SPLITS:
            row[split] = {side: value(summaries[side].get(split), name) for side in SIDES}
        row["n"] = {split: {side: _n(summaries[side].get(split), name) for side in SIDES} for split in SPLITS}
        row["gap"] = {side: (round(row["dev"][side] - row["holdout"][side], 4)
                             if row["dev"][side] is not None and row["holdout"][side] is not None else None)
                      for side in SIDES}
        row.update(_judge_gap(name, row, samples, unbuilt))
        if name == m.ABSTENTION_ACCURACY:
            row["baseline"] = {split: never_abstain(samples["candidate"].get(split, ())) for split in SPLITS}
        elif name in (m.ABSTENTION_F1, m.ABSTENTION_PRECISION, m.ABSTENTION_RECALL):
            row["baseline"] = dict.fromkeys(SPLITS, 0.0)  # what never abstaining scores on these, whatever the mix
        rows.append(row)
    return {"metrics": list(KEY_METRICS), "rule": {"confidence": 0.95, "min_holdout_n": MIN_HOLDOUT_N,
                                                   "resamples": RESAMPLES, "seed": SEED}, "rows": rows}


def _n(summary: Summary | None, name: str) -> int | None:
    return summary.n.get(name, 0) if summary else None


def _judge_gap(name: str, row: Mapping, samples: Samples, unbuilt: Sequence[str]) -> dict:
    """{"flagged", "interval", "why"} for one headline row (see headline)."""
    missing = [f"{side} {split}" for side in ("candidate", "reference") for split in SPLITS if row[split][side] is None]
    holdout_n = row["n"]["holdout"]["candidate"] or 0
    why = ("the reference did not build" if "reference" in unbuilt else
           f"no value for {', '.join(missing)}" if missing else
           f"holdout n {holdout_n} < {MIN_HOLDOUT_N}" if holdout_n < MIN_HOLDOUT_N else None)
    if why is None:
        result = gap_interval(samples["candidate"], samples["reference"], name)
        if result is not None:
            return {"flagged": result.low > 0, "interval": [round(result.low, 4), round(result.high, 4)], "why": None}
        why = "undefined on the resampled questions"
    return {"flagged": None, "interval": None, "why": why}


def never_abstain(samples: Sequence[Sample]) -> float | None:
    """abstention_accuracy of a pipeline that never abstains, on these questions: the share of those scored
    on abstention_accuracy that are answerable. None when none is."""
    scored = [s.answerable for s in samples if m.ABSTENTION_ACCURACY in s.scores]
    return round(sum(scored) / len(scored), 4) if scored else None


def _tags(summary: Summary | None) -> Mapping[str, Mapping[str, float]]:
    return summary.per_tag if summary else {}


def per_tag(summaries: Summaries) -> list[dict]:
    """For each planted tag, dev and holdout apart: TAG_RECALL and the tag's own metric (tag_metric).

    {"tag", "primary", "n": {split: questions}, "metrics": {name: {split: {side: value}}}}; a split
    without the tag has n 0 and None values. Kept apart so a candidate tuned to dev cannot look as
    if it fixed a trap that the holdout still springs.
    """
    found = {split: {side: _tags(summaries[side].get(split)) for side in SIDES} for split in SPLITS}
    tags = sorted({tag for split in SPLITS for side in SIDES for tag in found[split][side]})
    rows = []
    for tag in tags:
        primary = tag_metric(tag)
        cell = {split: {side: found[split][side].get(tag, {}) for side in SIDES} for split in SPLITS}
        metrics = {name: {split: {side: cell[split][side].get(name) for side in SIDES} for split in SPLITS}
                   for name in (TAG_RECALL, primary)}
        rows.append({"tag": tag, "primary": primary,
                     "n": {split: max(int(c.get("n", 0)) for c in cell[split].values()) for split in SPLITS},
                     "metrics": {name: by_split for name, by_split in metrics.items()
                                 if any(v is not None for sides in by_split.values() for v in sides.values())}})
    return rows


def tag_splits(row: Mapping) -> dict:
    """A per_tag row as {"tag", "n": {split: n}, "metrics": {name: {split: {side: value}}}}; a row from a
    scorecard written before dev and holdout were kept apart has one split, "dev+holdout"."""
    if isinstance(row["n"], dict):
        return {"tag": row["tag"], "n": dict(row["n"]), "metrics": dict(row["metrics"])}
    return {"tag": row["tag"], "n": {"dev+holdout": row["n"]},
            "metrics": {name: {"dev+holdout": values} for name, values in row["metrics"].items()}}


def _covers(chunk: Chunk, question: GoldenQuestion, documents: Mapping[str, Document]) -> bool:
    """Whether the corpus text at the chunk's offsets (never the text it reports) holds an evidence quote."""
    doc = documents.get(chunk.doc_id)
    sourced = SourceCorpus({doc.doc_id: doc.text} if doc else {}, {}).sourced(chunk)
    return any(m.covers(sourced, item) for item in question.evidence)


def _snippet(text: str, limit: int = SNIPPET) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hit_view(chunk: Chunk, question: GoldenQuestion, documents: Mapping[str, Document], score: float | None,
              **extra) -> dict:
    doc = documents.get(chunk.doc_id)
    return {"chunk_id": chunk.chunk_id, "doc_id": chunk.doc_id, "score": score, "covers": _covers(chunk, question, documents),
            "superseded_by": doc.superseded_by or "(newer)" if doc and doc.status == "superseded" else None,
            "text": _snippet(chunk.text), **extra}


def superseded_cited(sample: Sample, documents: Mapping[str, Document]) -> list[Chunk]:
    """The cited chunks of this sample whose document is superseded."""
    return [chunk for chunk in sample.cited_chunks
            if (doc := documents.get(chunk.doc_id)) is not None and doc.status == "superseded"]


def opener(label: str, sample: Sample, question: GoldenQuestion, documents: Mapping[str, Document],
           timeout_s: float) -> str:
    """A question to open the conversation about this failure, in the interviewer's voice."""
    old = superseded_cited(sample, documents)
    if old:
        doc = documents[old[0].doc_id]
        return (f"This answer cites a superseded document ({doc.doc_id}, replaced by {doc.superseded_by or 'a newer one'}): "
                "walk me through why.")
    evidence_doc = question.evidence[0].doc_id if question.evidence else "the corpus"
    error = sample.error or ""
    if label == "error" and error.startswith("TimeoutError"):
        return f"This question took more than {timeout_s:g} s. Where would the time go, and how would you find out?"
    if label == "error":
        return f"The pipeline raised `{_snippet(error, 120)}` here. How would you reproduce it with `ragkata ask`?"
    if label == "retrieval_miss":
        return (f"The evidence is in {evidence_doc}, but none of the top {SCORED_DEPTH} hits contains it. Is that "
                "chunking, tokenization or ranking, and how would you tell?")
    if label == "context_miss":
        ranks = [hit.rank for hit in sample.retrieved if _covers(hit.chunk, question, documents)]
        return (f"The evidence was retrieved at rank {ranks[0] if ranks else '?'} but never reached the generator. "
                "What decides what goes into the context?")
    if label == "generation_miss":
        missing = [f for f in question.facts if m.fact_recall(sample.answer, [f]) < 1.0]
        return (f"The context held the evidence, but the answer lacks \"{missing[0] if missing else '?'}\". "
                "Why did the generator choose the sentences it did?")
    if label == "citation_miss":
        return "The answer has the facts but its citations do not cover the evidence. Walk me through how citations are chosen."
    if label == "ungrounded":
        sources = [documents[c.doc_id].text[c.start:c.end] if c.doc_id in documents else "" for c in sample.cited_chunks]
        made_up = m.ungrounded_values(sample.answer, sources)
        return (f"The answer states {', '.join(made_up[:3]) or 'a value'}, which none of the chunks it cites holds. "
                "Where did that come from, and how would your pipeline catch it?")
    if label == "abstained_wrongly":
        return f"The corpus answers this ({evidence_doc}), yet the pipeline abstained. Which signal made it give up?"
    if label == "answered_unanswerable":
        top = sample.top[0].doc_id if sample.top else "nothing"
        return f"The corpus cannot answer this, yet the pipeline answered from {top}. How could it have known?"
    return "Walk me through this one."


def _retrieved_view(hit: RankedHit, question: GoldenQuestion, documents: Mapping[str, Document],
                    context: set[str]) -> dict:
    return _hit_view(hit.chunk, question, documents, hit.score, rank=hit.rank, in_context=hit.chunk.chunk_id in context)


def _example(sample: Sample, split: str, question: GoldenQuestion, documents: Mapping[str, Document],
             others: Mapping[str, str], timeout_s: float) -> dict:
    context = set(sample.context)
    retrieved = [_retrieved_view(hit, question, documents, context) for hit in sample.retrieved]
    shown = retrieved[:5] + [hit for hit in retrieved[5:] if hit["covers"]][:1]
    scores = {hit.chunk.chunk_id: hit.score for hit in sample.retrieved}  # a cited id not in here was never retrieved
    cited = [_hit_view(chunk, question, documents, scores.get(cid), in_context=cid in context, known=cid in scores)
             for cid, chunk in zip(sample.citations, sample.cited_chunks)]
    return {
        "id": sample.id, "split": split, "question": sample.question, "tags": list(sample.tags),
        "label": sample.failure, "error": sample.error,
        "expected": {"answer": question.answer, "facts": list(question.facts),
                     "evidence": [{"doc_id": e.doc_id, "quote": _snippet(e.quote)} for e in question.evidence]},
        "retrieved": shown, "retrieved_total": len(sample.retrieved), "context": list(sample.context),
        "cited": cited, "answer": _snippet(sample.answer, 600), "abstained": sample.abstained,
        "others": dict(others), "opener": opener(sample.failure, sample, question, documents, timeout_s),
        "reference_misses": others.get("reference") != "ok",  # shown as "the reference misses this too"
    }


def failures(samples: Samples, questions: Mapping[tuple[str, str], GoldenQuestion],
             documents: Mapping[str, Document], timeout_s: float) -> dict:
    """Label counts per side (dev and holdout together) and up to three candidate examples per label.

    Examples are questions the reference answers right (label "ok") first; only when there are too few
    of those do questions the reference gets wrong fill up, each marked reference_misses. Within each
    group dev comes before holdout, and one example per tag not yet shown before the rest.
    """
    every = {side: [(split, s) for split in SPLITS for s in samples[side].get(split, [])] for side in SIDES}
    counts = {label: {side: sum(s.failure == label for _, s in every[side]) for side in SIDES} for label in FAILURE_LABELS}
    labels = {side: {(split, s.id): s.failure for split, s in every[side]} for side in SIDES}
    examples: dict[str, list[dict]] = {}
    for label in FAILURE_LABELS:
        if label == "ok":
            continue
        chosen = [(split, s) for split, s in every["candidate"] if s.failure == label]
        chosen.sort(key=lambda item: item[0] != "dev")
        right = [labels["reference"].get((split, s.id)) == "ok" for split, s in chosen]
        picked: list[tuple[str, Sample]] = []
        seen_tags: set[str] = set()
        for wanted in (True, False):  # the reference's right answers first: those are the candidate's to explain
            group = [item for item, ok in zip(chosen, right) if ok == wanted]
            picked += _pick(group, EXAMPLES_PER_LABEL - len(picked), seen_tags)
        examples[label] = [_example(s, split, questions[(split, s.id)], documents,
                                    {side: labels[side].get((split, s.id), "-") for side in ("starter", "reference")},
                                    timeout_s) for split, s in picked]
    old = {side: sum(bool(superseded_cited(s, documents)) for _, s in every[side]) for side in SIDES}
    return {"counts": counts, "examples": examples, "superseded_citations": old,
            "errors": {side: [[f"{split}/{s.id}", s.error] for split, s in every[side] if s.error][:50]
                       for side in SIDES}}


def _pick(group: Sequence[tuple[str, Sample]], room: int, seen_tags: set[str]) -> list[tuple[str, Sample]]:
    """Up to `room` items of `group` in its order: first one per tag not in seen_tags (updated), then any."""
    picked = []
    for item in group:
        if len(picked) < room and (not set(item[1].tags) <= seen_tags or not item[1].tags):
            picked.append(item)
            seen_tags.update(item[1].tags)
    return picked + [item for item in group if item not in picked][: max(room - len(picked), 0)]


def context_chars(samples: Sequence[Sample]) -> float | None:
    """Mean characters handed to the generator per answered question (Sample.context_chars)."""
    sizes = [s.context_chars for s in samples if s.error is None]
    return round(sum(sizes) / len(sizes), 1) if sizes else None


def index_line(build_seconds: float | None, cached: bool | None) -> str:
    """How a side got its index, honestly: "built in 12.30 s", "loaded from cache in 0.40 s", or "-"."""
    if build_seconds is None:
        return "-"
    how = {True: "loaded from cache in", False: "built in", None: "built or loaded in"}[cached]
    return f"{how} {build_seconds:.2f} s"


def alike(cached: Mapping[str, bool | None], a: str, b: str) -> bool:
    """Whether two sides' index times may be compared: both built cold, or both loaded from the cache.
    A cache load beside a cold build measures the cache, not the code; unknown (None) compares with nothing."""
    return cached.get(a) is not None and cached.get(a) == cached.get(b)


def build_note(cached: Mapping[str, bool | None]) -> str:
    """"" when every side got its index the same way, else what keeps their build times apart:
    "not comparable: starter built cold, candidate loaded from the cache, reference built cold"."""
    if all(alike(cached, "candidate", side) for side in ("starter", "reference")):
        return ""
    how = {True: "loaded from the cache", False: "built cold", None: "not reported"}
    return "not comparable: " + ", ".join(f"{side} {how[cached.get(side)]}" for side in SIDES)


def latency(summaries: Summaries, samples: Samples, sides: Mapping[str, Side]) -> dict:
    """p50/p95 per stage and side over every question, plus the build, index size, memory and context size.

    build_seconds is the index build or cache load alone (cached says which); pipeline_seconds is the
    whole build_pipeline call (model load, chunking and the index), as in harness.records.IndexReport.
    alike says, for the starter and the reference, whether the candidate's build times may be set against
    theirs (both built cold or both loaded from the cache); build_note says why not, or "".
    """
    every = {side: summaries[side].get("all") for side in SIDES}
    stages = sorted({stage for side in SIDES if every[side] for stage in every[side].latency_ms},
                    key=lambda s: (s == "total", s))
    table = {stage: {side: {p: every[side].latency_ms.get(stage, {}).get(p) if every[side] else None
                            for p in ("p50", "p95")} for side in SIDES} for stage in stages}
    index = {side: sides[side].build.index if sides[side].build else None for side in SIDES}
    cached = {side: index[side].cached if index[side] else None for side in SIDES}
    return {
        "stages": table,
        "build_seconds": {side: index[side].build_seconds if index[side] else None for side in SIDES},
        "cached": cached,
        "alike": {side: alike(cached, "candidate", side) for side in ("starter", "reference")},
        "build_note": build_note(cached),
        "pipeline_seconds": {side: index[side].pipeline_seconds if index[side] else None for side in SIDES},
        "chunks": {side: index[side].chunks if index[side] else None for side in SIDES},
        "peak_rss_mb": {side: sides[side].peak_rss_mb or None for side in SIDES},
        "context_chars": {side: context_chars([s for split in SPLITS for s in samples[side].get(split, [])]) for side in SIDES},
    }


def generation(summaries: Summaries, sides: Mapping[str, Side]) -> dict:
    """Per side, over every question: the generator, the model and the endpoint's host:port it called (None
    for a generator that calls no model), prompt and completion tokens per question (p50, p95), the cost
    per question and in all (USD, 0 for replies from the cache), model calls and cache hits.

    Read from the Config each side used (its build) and from its Summary; an older summary without the
    usage sections gives None.
    """
    every = {side: summaries[side].get("all") for side in SIDES}
    config = {side: sides[side].build.config if sides[side].build else {} for side in SIDES}
    llm = {side: uses_llm(config[side]) for side in SIDES}

    def usage(side: str, read) -> object:
        summary = every[side]
        try:
            return read(summary) if summary else None
        except (KeyError, TypeError):
            return None

    return {
        "generator": {side: config[side].get("generator") for side in SIDES},
        "model": {side: config[side].get("llm_model") if llm[side] else None for side in SIDES},
        "endpoint": {side: endpoint_host(config[side].get("llm_base_url")) if llm[side] else None for side in SIDES},
        "tokens": {kind: {side: usage(side, lambda s: {p: s.tokens[kind][p] for p in ("p50", "p95")}) for side in SIDES}
                   for kind in ("prompt", "completion")},
        "cost_per_question_usd": {side: usage(side, lambda s: s.cost_usd["per_1000_questions"] / 1000) for side in SIDES},
        "cost_usd": {side: usage(side, lambda s: s.cost_usd["sum"]) for side in SIDES},
        "llm_calls": {side: usage(side, lambda s: s.llm_calls) for side in SIDES},
        "llm_cache_hits": {side: usage(side, lambda s: s.llm_cache_hits) for side in SIDES},
    }


def models(card: Scorecard) -> list[tuple[str, str, str]]:
    """(side, model, endpoint host:port) for each side that called a language model."""
    gen = card.generation
    return [(side, gen["model"][side], gen["endpoint"][side] or "?") for side in SIDES if gen["model"][side]]


def limits_line(card: Scorecard) -> str:
    """"30 s per question" or, when the sides differ, "30 s per question (candidate 213 s)"."""
    base = card.inputs["limits"]["timeout_s"]
    other = [f"{side} {card.sides[side].timeout_s:g} s" for side in SIDES if card.sides[side].timeout_s != base]
    return f"{base:g} s per question" + (f" ({', '.join(other)})" if other else "")


def isolation(card: Scorecard) -> str:
    """How the candidate's code was confined: "bwrap", "docker" or "none (unconfined)"."""
    level = (card.inputs.get("isolation") or {}).get("level", "?")
    return "none (unconfined)" if level == "none" else level


def usd(value: float | None) -> str:
    """Dollars with the digits a fraction of a cent needs: 0.000068 -> "0.000068"; 0.0025 -> "0.0025";
    2.5 -> "2.50"; 0 -> "0"; 1e-9 -> "< 0.000001"; None -> "-"."""
    if value is None:
        return "-"
    if value == 0 or value >= 1:
        return "0" if value == 0 else f"{value:.2f}"
    text = f"{value:.6f}".rstrip("0")
    return "< 0.000001" if text == "0." else text
