"""The scorecard's first screen as data: how did they do, what did they change, what to ask.

Pure functions of the Scorecard record; render_html.py and render_md.py lay the answers out above the
folded sections. Every prompt is chosen from what the scorecard already computed (flagged holdout gaps,
the failure examples' openers, the session's discipline, the rubric evidence) and links to its
evidence further down. Left out on purpose: any new measurement, and any wording of a judgement.
"""

from __future__ import annotations

import re
from typing import Mapping

from grader.card import Scorecard
from grader.timeline import when
from harness import metrics as m

LEAD_METRICS = (m.EVIDENCE_RECALL_AT[5], m.CITATION_PRECISION, m.FACT_RECALL, m.ABSTENTION_F1)  # the first screen's rows
PROMPTS = 3
MAX_FROM_FAILURES = 2  # of the PROMPTS, so that one kind of evidence cannot crowd out the rest
COMMITS_SHOWN = 6  # the newest; the rest are in section 6


def key_rows(card: Scorecard) -> list[Mapping]:
    """The headline rows of LEAD_METRICS, in that order; metrics the headline lacks are left out."""
    rows = {row["metric"]: row for row in card.headline["rows"]}
    return [rows[name] for name in LEAD_METRICS if name in rows]


def anchor(*parts: object) -> str:
    """An HTML id from free text: "ex-holdout-q/7 b" -> "ex-holdout-q-7-b"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(str(p) for p in parts)).strip("-")


def changed(card: Scorecard) -> dict:
    """{"tasks": [{task, title, files, added, deleted, commits}], "commits": newest COMMITS_SHOWN, oldest
    first, "more": commits left out, "totals", "uncommitted", "method", "error"} from card.changes."""
    ch = card.changes
    if ch.get("error"):
        return {"error": ch["error"], "tasks": [], "commits": [], "more": 0, "totals": None, "uncommitted": None}
    commits = list(ch.get("commits") or [])
    tasks_of = {}
    for task in ch.get("tasks") or []:
        for sha in task["commits"]:
            tasks_of.setdefault(sha, []).append(task["task"])
    shown = [{**c, "tasks": sorted(t for t in tasks_of.get(c["commit"][:7], []) if t is not None)}
             for c in commits[-COMMITS_SHOWN:]]
    return {"error": None, "tasks": list(ch.get("tasks") or []), "commits": shown,
            "more": ch.get("commits_total", len(commits)) - len(shown), "totals": ch.get("totals"),
            "uncommitted": ch.get("uncommitted"), "method": ch.get("method", ""), "bundle": ch.get("bundle")}


def _gap_prompt(card: Scorecard) -> list[dict]:
    """The flagged holdout gap that exceeds the reference's most; the other flagged metrics named with it."""
    flagged = [row for row in card.headline["rows"] if row.get("flagged") is True]
    if not flagged:
        return []
    excess = lambda row: (row["gap"]["candidate"] or 0) - (row["gap"]["reference"] or 0)  # noqa: E731
    worst = max(flagged, key=excess)
    others = [row["metric"] for row in flagged if row is not worst]
    gap = worst["gap"]
    return [{"strength": 3 + excess(worst), "section": "s1",
             "text": f"{worst['metric']} drops {gap['candidate']:.2f} from dev to holdout, the reference's "
                     f"{gap['reference']:.2f}: what did you tune on the dev set?",
             "evidence": "holdout gap flagged" + (f"; also on {', '.join(others)}" if others else "")
                         + (f" ({worst['why']})" if worst.get("why") else ""),
             "href": "#s1-body"}]


def _failure_prompts(card: Scorecard) -> list[dict]:
    """One per failure label: its first example's opener, stronger where the reference got it right and
    where the candidate fails it more often than the reference."""
    fail = card.failures
    total = sum(counts["candidate"] for counts in fail["counts"].values()) or 1
    prompts = []
    for label, examples in fail["examples"].items():
        if not examples:
            continue
        ex, counts = examples[0], fail["counts"][label]
        excess = (counts["candidate"] - counts["reference"]) / total
        reference_ok = ex["others"].get("reference") == "ok"
        prompts.append({"strength": (2 if reference_ok else 1) + max(0.0, excess) * 0.9, "section": "s3",
                        "text": ex["opener"],
                        "evidence": f"{ex['split']}/{ex['id']}: {label} ({counts['candidate']} of the candidate's, "
                                    f"{counts['reference']} of the reference's); the reference: {ex['others'].get('reference')}",
                        "href": "#" + anchor("ex", ex["split"], ex["id"])})
    return prompts


def _discipline_prompts(card: Scorecard) -> list[dict]:
    """No runs at all; else the final code never measured, and commits to exercise/ no run measured."""
    d = (card.timeline or {}).get("discipline") or {}
    prompts = []
    if d.get("runs") == 0:
        return [{"strength": 2.5, "section": "s5", "href": "#s5-body",
                 "text": "No run of `ragkata eval` in your folder: how did you decide what to change, and whether it worked?",
                 "evidence": "no runs/ folder with evaluations"}]
    if d.get("final_state_measured") is False:
        prompts.append({"strength": 2.5, "section": "s5", "href": "#s5-body",
                        "text": "The final code was never measured: how do you know it does what you think?",
                        "evidence": f"exercise/ changed at {when(d.get('last_edit') or '')} UTC, after the last run"})
    unmeasured = d.get("unmeasured_commits") or []
    if unmeasured:
        sha, _, subject = unmeasured[0].partition(" ")
        prompts.append({"strength": 1.5 + min(0.4, 0.1 * len(unmeasured)), "section": "s5", "href": "#s5-body",
                        "text": f"No run measured commit {sha} (\u201c{subject}\u201d): what did you expect it to move?",
                        "evidence": f"{len(unmeasured)} of {d.get('commits')} commit(s) to exercise/ unmeasured"})
    return prompts


def _rubric_prompts(card: Scorecard) -> list[dict]:
    """Rubric evidence lines that already say what to ask, and failing tests of the candidate's own."""
    prompts = []
    tests = card.tests or {}
    if tests.get("ran") and not tests.get("ok"):
        prompts.append({"strength": 1.8, "section": "s6", "href": "#s6-body",
                        "text": "Your own tests fail: which is wrong, the test or the code?",
                        "evidence": str(tests.get("line", ""))})
    for row in card.rubric:
        for line in row["evidence"]:
            before, found, ask = line.partition(": ask ")
            if found:
                prompts.append({"strength": 0.5, "section": "s7", "href": "#" + anchor("rubric", row["id"]),
                                "text": ask[:1].upper() + ask[1:] + ("" if ask.endswith("?") else "?"),
                                "evidence": f"{row['title']}: {before}"})
    return prompts


def prompts(card: Scorecard, count: int = PROMPTS) -> list[dict]:
    """The `count` strongest questions to ask, strongest first: {"text", "evidence", "href", "strength",
    "section"}. Tiers: a flagged holdout gap (3+), the final code unmeasured (2.5), a failure the
    reference avoids (2+), failing own tests (1.8), an unmeasured commit (1.5+), a failure the reference
    shares (1+), a rubric line that says what to ask (0.5). At most MAX_FROM_FAILURES failure examples."""
    pool = []
    for source in (_gap_prompt, _failure_prompts, _discipline_prompts, _rubric_prompts):
        try:
            pool += source(card)
        except (KeyError, TypeError, AttributeError):  # an older scorecard without that section's fields
            continue
    chosen, from_failures = [], 0
    for prompt in sorted(pool, key=lambda p: -p["strength"]):
        if prompt["section"] == "s3":
            if from_failures == MAX_FROM_FAILURES:
                continue
            from_failures += 1
        chosen.append(prompt)
        if len(chosen) == count:
            break
    return chosen
