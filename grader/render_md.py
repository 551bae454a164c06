"""The scorecard as Markdown: the three answers first (how did they do, what did they change, what to
ask: grader/summary_view.py), then sections 1-7 as tables and lists, readable in a terminal or a pull
request, in the same order as the HTML.

Reads only the Scorecard record (grader/card.py). Left out on purpose: charts and folding (see
render_html.py) and any computation beyond formatting. Candidate text is shown as inline code or
quoted, never as markup.
"""

from __future__ import annotations

from grader.card import Scorecard
from grader.scorecard import SIDES, TAG_RECALL, index_line, isolation, limits_line, models, tag_splits, usd
from grader.summary_view import changed, key_rows, prompts
from grader.timeline import discipline_lines, when


def f(value: object, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def code(text: object) -> str:
    """Inline code that survives backticks and pipes in candidate text."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def arrow(values: dict, digits: int = 3) -> str:
    return " → ".join(f(values.get(side), digits) for side in SIDES)


def render_md(card: Scorecard) -> str:
    lines = [*(f"> **{alert}**" for alert in card.alerts), *([""] if card.alerts else []),
             f"# ragkata scorecard: {card.candidate['name']}", "",
             f"Generated {card.generated} from `{card.candidate['dir']}`"
             + (f" at commit `{card.candidate['commit'][:7]}`" + (" (uncommitted changes)" if card.candidate['dirty'] else "")
                if card.candidate.get("commit") else "") + ".",
             f"Dev: {card.inputs['dev']['questions']} questions; holdout: "
             f"{card.inputs['holdout']['questions'] if card.inputs['holdout'] else 0} questions. "
             f"Limits: {limits_line(card)}, {card.inputs['limits']['memory_mb']} MB memory; isolation {isolation(card)}. "
             + "".join(f"The {side} called {code(model)} at {code(host)}. " for side, model, host in models(card))
             + "Values read starter → candidate → reference.", ""]
    for side in SIDES:
        for incident in card.sides[side].incidents:
            first, _, rest = incident.partition("\n")
            lines += [f"> **{first}**", ""]
            if rest.strip():
                lines += ["```", rest.replace("```", "ʼʼʼ"), "```", ""]
    for note in card.notes:
        lines.append(f"> note: {note}")
    lines.append("")
    for section in (_first_screen, _headline, _per_tag, _failures, _latency, _timeline, _changes, _rubric):
        try:
            lines += section(card)
        except Exception as exc:  # one broken section must not lose the others
            lines += [f"> section unavailable: {type(exc).__name__}: {exc}", ""]
    lines += ["", f"Digest {code(card.digest)} (checked by --render-only)."]
    return "\n".join(lines) + "\n"


def _first_screen(card: Scorecard) -> list[str]:
    """How did they do (the lead metrics), what did they change (tasks, commits), what to ask (three prompts)."""
    rows = [[row["metric"], arrow(row["dev"]), arrow(row["holdout"]), f(row["gap"]["candidate"]), f(row["gap"]["reference"]),
             "**flagged**" if row.get("flagged") else (row.get("why") or "") if row.get("flagged") is None else ""]
            for row in key_rows(card)]
    lines = ["## How did they do", "", *table(["metric", "dev", "holdout", "gap cand.", "gap ref.", "holdout gap"], rows)]
    view = changed(card)
    lines += ["## What did they change", ""]
    if view["error"]:
        lines += [view["error"], ""]
    else:
        lines += [f"- {'task ' + str(t['task']) + ': ' if t['task'] is not None else ''}{t['title']} +{t['added']} −{t['deleted']} "
                  f"({', '.join(code(p) for p in t['files'])})" for t in view["tasks"]] or ["- nothing changed"]
        lines.append("")
        if view["bundle"] is None:
            lines += [f"No commits to list: {view['method']}.", ""]
        else:
            lines += table(["commit", "UTC", "subject", "+", "−", "tasks"],
                           [[code(c["commit"][:7]), when(c["time"]), code(c["subject"]), str(c["added"]), str(c["deleted"]),
                             ", ".join(map(str, c["tasks"])) or "-"] for c in view["commits"]]) if view["commits"] else [
                "No commits since the bundle.", ""]
            unc = view["uncommitted"] or {}
            extra = ([f"{view['more']} earlier commit(s) in section 6"] if view["more"] else []) + (
                [f"uncommitted: {unc['files']} file(s) +{unc['added']} −{unc['deleted']}"] if unc.get("files") else [])
            lines += ["; ".join(extra) + ".", ""] if extra else []
    lines += [f"Own tests: {card.tests.get('line') or card.tests.get('error') or 'not run'}", "", "## What to ask", ""]
    lines += [f"{i}. {p['text']}  \n   _{p['evidence']}_ (section {p['section'][1:]})" for i, p in enumerate(prompts(card), 1)] or [
        "Nothing stands out: ask which result surprised them."]
    return lines + [""]


def _headline(card: Scorecard) -> list[str]:
    head = card.headline
    rows = []
    for row in head["rows"]:
        n = row.get("n") or {}
        rows.append([row["metric"], arrow(row["dev"]), _counts(n.get("dev")), arrow(row["holdout"]), _counts(n.get("holdout")),
                     f(row["gap"]["candidate"]), f(row["gap"]["reference"]), _gap_cell(row)])
    least = (head.get("rule") or {}).get("min_holdout_n", 20)
    baseline = next((r.get("baseline") for r in head["rows"] if r["metric"] == "abstention_accuracy"), None)
    never = (f" Never abstaining would score abstention_accuracy {f(baseline.get('dev'))} on dev and "
             f"{f(baseline.get('holdout'))} on holdout: read abstention_f1." if baseline else "")
    return ["## 1. Headline", "",
            ("n: the questions behind each value (one number when the three sides share it). Gap = dev − holdout; "
             "flagged when the paired bootstrap 95% interval of the candidate's gap minus the reference's (last "
             f"column) lies above zero, judged only on {least} or more holdout questions.{never}"), "",
            *table(["metric", "dev", "n", "holdout", "n", "gap candidate", "gap reference", "cand. − ref. gap, 95%"], rows)]


def _counts(n: dict | None) -> str:
    """"180", or "180/175/180" (starter/candidate/reference) when the sides' n differ; "-" when unknown."""
    values = [(n or {}).get(side) for side in SIDES]
    return "-" if all(v is None for v in values) else str(values[0]) if len(set(values)) == 1 else "/".join(
        "-" if v is None else str(v) for v in values)


def _gap_cell(row: dict) -> str:
    interval = row.get("interval")
    if row["flagged"] is None or not interval:
        return f"n/a ({row.get('why') or 'not judged'})"
    text = f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"
    return f"**gap** {text}" if row["flagged"] else text


def _per_tag(card: Scorecard) -> list[str]:
    rows = []
    splits = list(tag_splits(card.per_tag[0])["n"]) if card.per_tag else ["dev", "holdout"]
    for cell, tag in ((tag_splits(row), row["tag"]) for row in card.per_tag):
        for name, by_split in cell["metrics"].items():
            rows.append([tag, name, *(f"{arrow(by_split.get(split, {}))} (n {cell['n'].get(split, 0)})" for split in splits)])
    return ["## 2. Per tag", "", f"Dev and holdout apart; each tag with {TAG_RECALL} and the metric its trap moves. "
            "A trap fixed on dev but not on holdout was learned, not solved.", "",
            *table(["tag", "metric", *splits], rows)]


def _failures(card: Scorecard) -> list[str]:
    fail = card.failures
    lines = ["## 3. Failure attribution", "", "First failing stage per question, dev and holdout together.", "",
             *table(["label", *SIDES], [[label, *(str(c[side]) for side in SIDES)] for label, c in fail["counts"].items()])]
    for label, examples in fail["examples"].items():
        if not examples:
            continue
        lines += [f"### {label}", ""]
        for ex in examples:
            lines += [f"**{ex['split']}/{ex['id']}** ({', '.join(ex['tags'])}): {code(ex['question'])}  ",
                      f"starter: {ex['others'].get('starter')}, reference: {ex['others'].get('reference')}"
                      + (" (the reference misses this too)" if ex.get("reference_misses") else ""), "",
                      f"- ask: *{ex['opener']}*"]
            if ex["error"]:
                lines.append(f"- error: {code(ex['error'][:300])}")
            lines.append(f"- expected: {code(ex['expected']['answer'] or '(abstain)')}; facts "
                         + ", ".join(code(x) for x in ex["expected"]["facts"]))
            for ev in ex["expected"]["evidence"]:
                lines.append(f"  - evidence `{ev['doc_id']}`: {code(ev['quote'])}")
            lines.append(f"- answer{' (abstained)' if ex['abstained'] else ''}: {code(ex['answer'] or '(empty)')}")
            for hit in ex["retrieved"]:
                marks = ", ".join(m for m in ("evidence" if hit["covers"] else "", "in context" if hit["in_context"] else "",
                                              f"superseded by {hit['superseded_by']}" if hit["superseded_by"] else "") if m)
                lines.append(f"  - retrieved #{hit['rank']} {code(hit['chunk_id'])}" + (f" ({marks})" if marks else "")
                             + f": {code(hit['text'][:160])}")
            for hit in ex["cited"]:
                state = "not retrieved" if not hit["known"] else "not in context" if not hit["in_context"] else (
                    "covers evidence" if hit["covers"] else "misses the evidence" if ex["expected"]["evidence"] else "in context")
                lines.append(f"  - cited {code(hit['chunk_id'])} ({state}"
                             + (f", superseded by {hit['superseded_by']}" if hit["superseded_by"] else "") + ")")
            if not ex["cited"]:
                lines.append("  - cited: nothing")
            lines.append("")
    return lines


def _latency(card: Scorecard) -> list[str]:
    lat = card.latency
    rows = [[stage, *(f"{f(v[side]['p50'], 1)} / {f(v[side]['p95'], 1)}" for side in SIDES)] for stage, v in lat["stages"].items()]
    how = {True: " (index from cache)", False: " (index built cold)", None: ""} if lat.get("build_note") else {}
    rows += [["build_pipeline s (all of it)", *(f(lat["pipeline_seconds"][s], 2) + how.get(lat["cached"][s], "") for s in SIDES)],
             ["index", *(index_line(lat["build_seconds"][s], lat["cached"][s]) for s in SIDES)],
             ["index chunks", *(f(lat["chunks"][s]) for s in SIDES)],
             ["peak memory MB", *(f(lat["peak_rss_mb"][s], 0) for s in SIDES)],
             ["context chars / question", *(f(lat["context_chars"][s], 0) for s in SIDES)]]
    gen = card.generation
    rows += [["generator", *(code(gen["generator"][s] or "-") for s in SIDES)],
             ["model", *(code(gen["model"][s]) if gen["model"][s] else "-" for s in SIDES)],
             ["endpoint", *(code(gen["endpoint"][s]) if gen["endpoint"][s] else "-" for s in SIDES)],
             *([f"{kind} tokens / question p50 / p95",
                *(f"{f(t[s]['p50'], 0)} / {f(t[s]['p95'], 0)}" if t[s] else "-" for s in SIDES)]
               for kind, t in gen["tokens"].items()),
             ["cost / question USD", *(usd(gen["cost_per_question_usd"][s]) for s in SIDES)],
             ["model calls (cache hits)", *(f"{f(gen['llm_calls'][s])} ({f(gen['llm_cache_hits'][s])})" for s in SIDES)]]
    note = lat.get("build_note", "")  # set when one side's index came from the cache and another's was built cold
    return ["## 4. Latency and cost", "", "p50 / p95 in ms per stage, over every question but the first (warm-up). "
            "build_pipeline s is the whole build (model load, chunking, index); index is the index alone, "
            "built or loaded from the embedding cache. Tokens and cost over every question; a reply from the "
            "cache costs nothing." + (f" Build times are {note}." if note else ""), "",
            *table(["stage", *SIDES], rows)]


def _timeline(card: Scorecard) -> list[str]:
    tl = card.timeline
    lines = ["## 5. Session timeline", "", f"Hand-over: {tl.get('handover') or 'the first commit'}; times in UTC.", ""]
    if tl.get("error"):
        return lines + [tl["error"], ""]
    lines += [f"- {line}" for line in discipline_lines(tl["discipline"])] + [""]
    if tl["runs"]:
        rows = [[r["run_id"], when(r["time"]), (r["commit"] or "-")[:7] + ("*" if r["dirty"] else ""),
                 "yes" if r["complete"] else "no", code(r["golden"]), code(", ".join(r["config_changes"]) or "-"),
                 *(f(r["metrics"].get(name)) for name in tl["metrics"]),
                 ", ".join(f"{k} {v:+.3f}" for k, v in r["moved"].items() if abs(v) >= 0.005) or "-"]
                for r in tl["runs"]]
        lines += table(["run", "date and time UTC", "commit", "complete", "golden", "config changed", *tl["metrics"], "moved"], rows)
        lines += ["\\* run on uncommitted changes", ""]
    return lines


def _changes(card: Scorecard) -> list[str]:
    ch, tests = card.changes, card.tests
    lines = ["## 6. What changed", ""]
    if ch.get("error"):
        lines += [ch["error"], ""]
    else:
        t = ch["totals"]
        lines += [f"{t['files']} file(s), +{t['added']} −{t['deleted']} lines; {ch['method']}.", ""]
        lines += table(["file", "status", "tasks", "+", "−"],
                       [[code(x["path"]), x["status"], ", ".join(str(p["task"]) for p in x.get("tasks", []) if p["task"] is not None) or "-",
                         str(x["added"]), str(x["deleted"])] for x in ch["files"]])
        if ch.get("bundle"):
            lines += [f"The candidate's commits since the bundle commit `{ch['bundle'][:7]}`"
                      + (f" (the newest {len(ch['commits'])} of {ch['commits_total']})" if ch.get("commits_total", 0) > len(ch["commits"]) else "")
                      + ":", "",
                      *table(["commit", "UTC", "subject", "+", "−", "files"],
                             [[code(c["commit"][:7]), when(c["time"]), code(c["subject"]), str(c["added"]), str(c["deleted"]),
                               ", ".join(code(x) for x in c["files"])] for c in ch.get("commits", [])])]
    lines += [f"Candidate's tests: {tests.get('line') or tests.get('error')}" + (f" (`{tests['command']}`)" if tests.get("command") else ""), ""]
    return lines


def _rubric(card: Scorecard) -> list[str]:
    r = card.ratings
    lines = ["## 7. Rubric", "",
             f"Rated {r['rated']} of {r['of']}" + (f": {r['total']} / {r['max']} (mean {r['mean']})" if r["rated"] else "")
             + (f", from `{r['file']}`" if r.get("file") else "; fill ratings.template.json and fold it in with "
                "`ragkata-grader grade --out <dir> --ratings <file> --render-only`") + ".", ""]
    for row in card.rubric:
        lines += [f"### {row['title']}: {row['score'] if row['score'] is not None else '_'} / 4", ""]
        lines += [f"- evidence: {e}" for e in row["evidence"]]
        lines += ["- levels: " + " ".join(f"**{k}** {v}" for k, v in row["levels"].items())]
        if row["note"]:
            lines.append(f"- note: {row['note']}")
        lines.append("")
    return lines
