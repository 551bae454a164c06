"""The scorecard's sections 1-4, computed from scored samples: headline, per tag, failures, latency.

Each function takes the three sides' samples (starter, candidate, reference) and returns plain JSON
data; the Markdown and HTML renderers only lay it out. Left out on purpose: running pipelines
(grade.py), the session timeline (timeline.py) and the rubric (rubric.py).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from exercise.contracts import Chunk, Document
from harness import metrics as m
from harness.golden import GoldenQuestion
from harness.scoring import FAILURE_LABELS

SIDES = ("starter", "candidate", "reference")
SPLITS = ("dev", "holdout")
KEY_METRICS = ("evidence_recall@5", "mrr@10", "ndcg@10", "citation_precision", "citation_recall", "citation_valid",
               "fact_recall", "answer_f1", "abstention_accuracy", "injection_resistance")
GAP_MARGIN = 0.05  # flag a candidate whose dev-minus-holdout gap exceeds the reference's by more than this
TAG_METRIC = {"unanswerable": "abstention_accuracy", "injection": "injection_resistance",
              "superseded": "citation_precision", "near-duplicate": "citation_precision"}  # default: fact_recall
EXAMPLES_PER_LABEL = 3
SNIPPET = 280

Samples = Mapping[str, Mapping[str, Sequence[dict]]]  # side -> split -> scored sample lines


def value(summary: Mapping | None, name: str) -> float | None:
    return (summary or {}).get("metrics", {}).get(name)


def headline(summaries: Mapping[str, Mapping[str, dict | None]]) -> dict:
    """Key metrics per side on dev and holdout, and the dev-minus-holdout gap flagged against the reference's."""
    rows = []
    for name in KEY_METRICS:
        row: dict = {"metric": name}
        for split in SPLITS:
            row[split] = {side: value(summaries[side].get(split), name) for side in SIDES}
        row["gap"] = {side: (round(row["dev"][side] - row["holdout"][side], 4)
                             if row["dev"][side] is not None and row["holdout"][side] is not None else None)
                      for side in SIDES}
        cand, ref = row["gap"]["candidate"], row["gap"]["reference"]
        row["flagged"] = None if cand is None or ref is None else cand - ref > GAP_MARGIN
        rows.append(row)
    return {"metrics": list(KEY_METRICS), "margin": GAP_MARGIN, "rows": rows}


def per_tag(summaries: Mapping[str, Mapping[str, dict | None]]) -> list[dict]:
    """For each planted tag, over dev and holdout together: evidence_recall@5 and the tag's own metric."""
    tags = sorted({tag for side in SIDES for tag in ((summaries[side].get("all") or {}).get("per_tag") or {})})
    rows = []
    for tag in tags:
        primary = TAG_METRIC.get(tag, "fact_recall")
        by_side = {side: ((summaries[side].get("all") or {}).get("per_tag") or {}).get(tag, {}) for side in SIDES}
        rows.append({"tag": tag, "n": max(row.get("n", 0) for row in by_side.values()), "primary": primary,
                     "metrics": {name: {side: by_side[side].get(name) for side in SIDES}
                                 for name in ("evidence_recall@5", primary)
                                 if any(by_side[side].get(name) is not None for side in SIDES)}})
    return rows


def _resolve(ids: Sequence[str], sample: dict) -> list[dict]:
    by_id = {hit["chunk_id"]: hit for hit in sample["retrieved"]}
    return [by_id.get(cid) or {"chunk_id": cid, "doc_id": "", "text": "", "score": None} for cid in ids]


def _covers(hit: dict, question: GoldenQuestion) -> bool:
    chunk = Chunk(hit["chunk_id"], hit["doc_id"], hit["text"], 0, 0)
    return any(m.covers(chunk, item) for item in question.evidence)


def _snippet(text: str, limit: int = SNIPPET) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hit_view(hit: dict, question: GoldenQuestion, documents: Mapping[str, Document], **extra) -> dict:
    doc = documents.get(hit["doc_id"])
    return {"chunk_id": hit["chunk_id"], "doc_id": hit["doc_id"], "score": hit.get("score"),
            "covers": _covers(hit, question), "superseded_by": doc.superseded_by or "(newer)" if doc and doc.status == "superseded" else None,
            "text": _snippet(hit["text"]), **extra}


def superseded_cited(sample: dict, documents: Mapping[str, Document]) -> list[dict]:
    """The cited chunks of this sample whose document is superseded."""
    cited = _resolve(sample["citations"], sample)
    return [hit for hit in cited if (doc := documents.get(hit["doc_id"])) is not None and doc.status == "superseded"]


def opener(label: str, sample: dict, question: GoldenQuestion, documents: Mapping[str, Document],
           timeout_s: float) -> str:
    """A question to open the conversation about this failure, in the interviewer's voice."""
    old = superseded_cited(sample, documents)
    if old:
        doc = documents[old[0]["doc_id"]]
        return (f"This answer cites a superseded document ({doc.doc_id}, replaced by {doc.superseded_by or 'a newer one'}): "
                "walk me through why.")
    evidence_doc = question.evidence[0].doc_id if question.evidence else "the corpus"
    error = sample.get("error") or ""
    if label == "error" and error.startswith("TimeoutError"):
        return f"This question took more than {timeout_s:g} s. Where would the time go, and how would you find out?"
    if label == "error":
        return f"The pipeline raised `{_snippet(error, 120)}` here. How would you reproduce it with `ragkata ask`?"
    if label == "retrieval_miss":
        return (f"The evidence is in {evidence_doc}, but none of the top 20 hits contains it. Is that chunking, "
                "tokenization or ranking, and how would you tell?")
    if label == "context_miss":
        ranks = [i for i, hit in enumerate(sample["retrieved"], 1) if _covers(hit, question)]
        return (f"The evidence was retrieved at rank {ranks[0] if ranks else '?'} but never reached the generator. "
                "What decides what goes into the context?")
    if label == "generation_miss":
        missing = [f for f in question.facts if m.fact_recall(sample["answer"], [f]) < 1.0]
        return (f"The context held the evidence, but the answer lacks \"{missing[0] if missing else '?'}\". "
                "Why did the generator choose the sentences it did?")
    if label == "citation_miss":
        return "The answer has the facts but its citations do not cover the evidence. Walk me through how citations are chosen."
    if label == "abstained_wrongly":
        return f"The corpus answers this ({evidence_doc}), yet the pipeline abstained. Which signal made it give up?"
    if label == "answered_unanswerable":
        top = sample["retrieved"][0]["doc_id"] if sample["retrieved"] else "nothing"
        return f"The corpus cannot answer this, yet the pipeline answered from {top}. How could it have known?"
    return "Walk me through this one."


def _example(sample: dict, split: str, question: GoldenQuestion, documents: Mapping[str, Document],
             others: Mapping[str, str], timeout_s: float) -> dict:
    context = set(sample["context"])
    retrieved = [_hit_view(hit, question, documents, rank=rank, in_context=hit["chunk_id"] in context)
                 for rank, hit in enumerate(sample["retrieved"], 1)]
    shown = retrieved[:5] + [hit for hit in retrieved[5:] if hit["covers"]][:1]
    known = {hit["chunk_id"] for hit in sample["retrieved"]}
    cited = [_hit_view(hit, question, documents, in_context=hit["chunk_id"] in context, known=hit["chunk_id"] in known)
             for hit in _resolve(sample["citations"], sample)]
    return {
        "id": sample["id"], "split": split, "question": sample["question"], "tags": sample["tags"],
        "label": sample["failure"], "error": sample.get("error"),
        "expected": {"answer": question.answer, "facts": list(question.facts),
                     "evidence": [{"doc_id": e.doc_id, "quote": _snippet(e.quote)} for e in question.evidence]},
        "retrieved": shown, "retrieved_total": len(sample["retrieved"]), "context": sample["context"],
        "cited": cited, "answer": _snippet(sample["answer"], 600), "abstained": sample["abstained"],
        "others": dict(others), "opener": opener(sample["failure"], sample, question, documents, timeout_s),
    }


def failures(samples: Samples, questions: Mapping[tuple[str, str], GoldenQuestion],
             documents: Mapping[str, Document], timeout_s: float) -> dict:
    """Label counts per side (dev and holdout together) and up to three candidate examples per label."""
    every = {side: [(split, s) for split in SPLITS for s in samples[side].get(split, [])] for side in SIDES}
    counts = {label: {side: sum(s["failure"] == label for _, s in every[side]) for side in SIDES} for label in FAILURE_LABELS}
    labels = {side: {(split, s["id"]): s["failure"] for split, s in every[side]} for side in SIDES}
    examples: dict[str, list[dict]] = {}
    for label in FAILURE_LABELS:
        if label == "ok":
            continue
        chosen = [(split, s) for split, s in every["candidate"] if s["failure"] == label]
        # Failures the reference avoids come first: those are the candidate's to explain.
        chosen.sort(key=lambda item: (labels["reference"].get((item[0], item[1]["id"])) != "ok", item[0] != "dev"))
        picked, seen_tags = [], set()
        for item in chosen:  # first pass: one example per new tag; second pass: fill up
            if len(picked) < EXAMPLES_PER_LABEL and (not set(item[1]["tags"]) <= seen_tags or not item[1]["tags"]):
                picked.append(item)
                seen_tags.update(item[1]["tags"])
        picked += [item for item in chosen if item not in picked][: EXAMPLES_PER_LABEL - len(picked)]
        examples[label] = [_example(s, split, questions[(split, s["id"])], documents,
                                    {side: labels[side].get((split, s["id"]), "-") for side in ("starter", "reference")},
                                    timeout_s) for split, s in picked]
    old = {side: sum(bool(superseded_cited(s, documents)) for _, s in every[side]) for side in SIDES}
    return {"counts": counts, "examples": examples, "superseded_citations": old,
            "errors": {side: [(f"{split}/{s['id']}", s["error"]) for split, s in every[side] if s["error"]][:50]
                       for side in SIDES}}


def context_chars(samples: Sequence[dict]) -> float | None:
    """Mean characters handed to the generator per question (context ids resolved through the top 20)."""
    sizes = [sum(len(hit["text"]) for hit in _resolve(s["context"], s)) for s in samples if s["error"] is None]
    return round(sum(sizes) / len(sizes), 1) if sizes else None


def latency(summaries: Mapping[str, Mapping[str, dict | None]], samples: Samples, sides: Mapping[str, dict]) -> dict:
    """p50/p95 per stage and side over every question, plus build time, index size, memory and context size."""
    stages = sorted({stage for side in SIDES for stage in ((summaries[side].get("all") or {}).get("latency_ms") or {})},
                    key=lambda s: (s == "total", s))
    table = {stage: {side: {p: ((summaries[side].get("all") or {}).get("latency_ms") or {}).get(stage, {}).get(p)
                            for p in ("p50", "p95")} for side in SIDES} for stage in stages}
    build = {side: (sides[side].get("build") or {}) for side in SIDES}
    return {
        "stages": table,
        "build_seconds": {side: build[side].get("build_seconds") for side in SIDES},
        "chunks": {side: (build[side].get("index_stats") or {}).get("chunks") for side in SIDES},
        "peak_rss_mb": {side: sides[side].get("peak_rss_mb") or None for side in SIDES},
        "context_chars": {side: context_chars([s for split in SPLITS for s in samples[side].get(split, [])]) for side in SIDES},
    }
