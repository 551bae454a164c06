"""The scorecard as one self-contained HTML file: inline CSS and SVG, no scripts, no external references.

Reads only the Scorecard record (grader/card.py). The first screen answers how the candidate did, what
they changed and what to ask (grader/summary_view.py); sections 1-7 follow, each folded in a <details>
that the first screen's links open. Every string that came from a pipeline, a golden file or the
candidate's repository goes through html.escape. Left out on purpose: JavaScript, web fonts and
anything that would need a network or a second file.
"""

from __future__ import annotations

import re
from html import escape

from grader.card import Scorecard
from grader.charts import SIDE_COLOURS, grouped_bars, timeline_chart
from grader.scorecard import SIDES, TAG_RECALL, index_line, isolation, limits_line, models, tag_splits, usd
from grader.summary_view import anchor, changed, key_rows, prompts
from grader.timeline import discipline_lines, when
from harness import metrics as m

CSS = """
:root { --bad:#cf222e; --bad-bg:#ffebe9; --warn-bg:#fff8c5; --good:#1a7f37; --good-bg:#dafbe1; --muted:#57606a; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 16px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color:#1f2328; margin:0; background:#f6f8fa; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; background:#fff; }
h1 { font-size: 30px; margin: 0 0 4px; } h2 { font-size: 23px; margin: 40px 0 10px; padding-top: 12px; border-top: 3px solid #1f2328; }
h3 { font-size: 18px; margin: 22px 0 8px; } .muted { color: var(--muted); } code, pre { font: 13.5px/1.4 ui-monospace, Menlo, Consolas, monospace; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 14px; font-size: 15px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { background: var(--bad-bg); color: var(--bad); font-weight: 600; } .good { background: var(--good-bg); }
.warn { background: var(--warn-bg); } .banner { padding: 10px 14px; border-radius: 6px; margin: 8px 0; white-space: pre-wrap; }
.banner.bad { border: 1px solid var(--bad); } .banner.warn { border: 1px solid #d4a72c; color:#1f2328; font-weight: 400; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; font-weight: 600; }
.swatch { display:inline-block; width:11px; height:11px; border-radius:2px; margin-right:4px; vertical-align: -1px; }
.example { border: 1px solid var(--line); border-left: 5px solid var(--bad); border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.ask { background: #ddf4ff; padding: 6px 10px; border-radius: 4px; font-weight: 600; margin: 6px 0; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; } .cols > div { min-width: 0; }
ul.hits { list-style: none; padding: 0; margin: 4px 0; } ul.hits li { padding: 3px 0; border-bottom: 1px dotted var(--line); font-size: 14px; }
.badge { display:inline-block; font-size: 12px; padding: 0 6px; border-radius: 10px; margin-right: 4px; border: 1px solid var(--line); }
.badge.ev { background: var(--good-bg); border-color: var(--good); } .badge.ctx { background: #ddf4ff; }
.badge.x { background: var(--bad-bg); border-color: var(--bad); color: var(--bad); }
.snip { color: #424a53; } pre.diff { background:#f6f8fa; padding: 8px; overflow-x: auto; max-height: 420px; }
pre.diff .a { color: #116329; background: #e6ffec; } pre.diff .d { color: #82071e; background: #ffebe9; }
.bar { display:inline-block; width: 70px; height: 9px; background: #eaeef2; margin-right: 6px; border-radius: 2px; vertical-align: 0; }
.bar span { display:block; height: 9px; border-radius: 2px; }
.crit { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; margin: 10px 0; }
.levels { display: grid; grid-template-columns: repeat(4, 1fr); gap: 6px; font-size: 13.5px; margin: 6px 0; }
.levels div { border: 1px solid var(--line); border-radius: 4px; padding: 4px 6px; } .levels div.on { border: 2px solid #0969da; background: #ddf4ff; }
.score { float: right; font-size: 20px; font-weight: 700; }
summary h3 { display: inline-block; margin: 14px 0 4px; } summary { cursor: pointer; }
.small table { font-size: 13.5px; } .small td code { font-size: 12.5px; }
.meta { font-size: 14px; margin: 0 0 6px; } ul.notes { margin: 6px 0; padding: 4px 10px 4px 28px; font-size: 13.5px; border-radius: 6px; }
details.incidents { font-size: 13.5px; padding: 4px 12px; white-space: normal; }
details.incidents > summary { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; } details.incidents pre { white-space: pre-wrap; margin: 4px 0; }
.glance { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 28px; margin: 10px 0 6px; }
.glance > div { min-width: 0; } .glance .q-how { grid-column: 1 / 3; }
.glance h2 { font-size: 19px; margin: 6px 0 4px; padding: 0; border: 0; }
.glance table { font-size: 14px; margin: 2px 0 4px; } .glance th, .glance td { padding: 3px 7px; }
.glance ul, .glance ol { margin: 2px 0; padding-left: 22px; font-size: 14px; } .glance li { margin: 2px 0; }
.glance ol.prompts li { margin: 5px 0; } .glance ol.prompts .ev { display: block; font-size: 13px; color: var(--muted); }
.glance .tasks li b { font-variant-numeric: tabular-nums; }
.commits td { font-size: 13px; padding: 2px 6px; } .commits td.subj { max-width: 330px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
details.section { border-top: 3px solid #1f2328; margin: 8px 0 0; }
details.section > summary { padding: 8px 0 6px; list-style-position: outside; margin-left: 18px; }
details.section > summary h2 { display: inline; font-size: 20px; margin: 0; padding: 0; border: 0; }
details.section > summary .gist { color: var(--muted); font-size: 14px; margin-left: 12px; }
.split { border-left: 2px solid #1f2328; }
"""


def e(value: object) -> str:
    return escape("" if value is None else str(value))


def num(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else e(value)


def td(value: object, cls: str = "", digits: int = 3, title: str = "") -> str:
    attrs = f' class="num {cls}"' + (f' title="{e(title)}"' if title else "")
    return f"<td{attrs}>{num(value, digits)}</td>"


def bar_td(value: float | None, side: str, cls: str = "") -> str:
    width = 0 if value is None else max(0.0, min(1.0, value)) * 100
    return (f'<td class="num {cls}"><span class="bar"><span style="width:{width:.0f}%;background:{SIDE_COLOURS[side]}">'
            f"</span></span>{num(value)}</td>")


def judge(values: dict, baseline: float | None = None) -> str:
    """Colour of the candidate's cell: red below the starter, green at or near the reference, but never green
    at or below `baseline`, what doing nothing scores (abstention_accuracy: never abstaining)."""
    s, c, r = values.get("starter"), values.get("candidate"), values.get("reference")
    if c is None:
        return "bad"
    if s is not None and c < s - 0.01:
        return "bad"
    if r is not None and c >= r - 0.02 and (baseline is None or c > baseline + 0.001):
        return "good"
    return ""


def table(header: list[str], rows: list[str], text_columns: int = 1) -> str:
    """A table whose first text_columns columns are text and the rest numbers (right-aligned headers)."""
    head = "".join(f'<th class="{"num" if i >= text_columns else ""}">{h}</th>' for i, h in enumerate(header))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def legend() -> str:
    return " ".join(f'<span class="swatch" style="background:{c}"></span>{s}' for s, c in SIDE_COLOURS.items())


def render_html(card: Scorecard) -> str:
    cand = card.candidate
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>ragkata scorecard: {e(cand['name'])}</title><style>{CSS}</style></head><body><main>",
             *(f'<div class="banner bad"><b>{e(alert)}</b></div>' for alert in card.alerts),
             f"<h1>ragkata scorecard: {e(cand['name'])}</h1>",
             f'<p class="muted meta">{e(card.generated)} · {e(cand["dir"])}'
             + (f" · commit {e(cand['commit'][:7])}{' (uncommitted changes)' if cand['dirty'] else ''}" if cand.get("commit") else "")
             + f" · dev {card.inputs['dev']['questions']} questions · holdout "
             f"{card.inputs['holdout']['questions'] if card.inputs['holdout'] else 0} questions · limits "
             f"{e(limits_line(card))}, {card.inputs['limits']['memory_mb']} MB · isolation {e(isolation(card))}"
             + "".join(f" · {e(side)} model <b>{e(model)}</b> at <code>{e(host)}</code>" for side, model, host in models(card))
             + "</p>",
             "</p>"]
    parts += _incidents(card) + [_first_screen(card)]
    parts.append('<nav>' + "".join(f'<a href="#s{i}-body">{i}. {name}</a>' for i, name in enumerate(SECTIONS, 1)) + "</nav>")
    for section, gist in ((_headline, _headline_gist), (_per_tag, _per_tag_gist), (_failures, _failures_gist),
                          (_latency, _latency_gist), (_timeline, _timeline_gist), (_changes, _changes_gist),
                          (_rubric, _rubric_gist)):
        try:
            parts.append(fold(section(card), _gist(gist, card)))
        except Exception as exc:  # one broken section must not lose the others
            parts.append(f'<div class="banner bad">section unavailable: {e(type(exc).__name__)}: {e(exc)}</div>')
    parts.append(f'<p class="muted">digest {e(card.digest)} (checked by --render-only)</p></main></body></html>\n')
    return "\n".join(parts)


SECTIONS = ("Headline", "Per tag", "Failures", "Latency and cost", "Timeline", "What changed", "Rubric")
SECTION_HEAD = re.compile(r'^<h2 id="(s\d+)">(.*?)</h2>', re.S)


def fold(section: str, gist: str = "") -> str:
    """A section that opens with <h2 id="sN">, folded: the heading and a one-line gist stay visible; the
    rest sits in <div id="sN-body">, which a link to #sN-body opens (browsers open a <details> that holds a
    link's target)."""
    head = SECTION_HEAD.match(section)
    if head is None:
        return section
    ident, title = head.groups()
    return (f'<details class="section"><summary><h2 id="{ident}">{title}</h2><span class="gist">{e(gist)}</span></summary>'
            f'<div id="{ident}-body">{section[head.end():]}</div></details>')


def _incidents(card: Scorecard) -> list[str]:
    """Incidents as one line (how many, which sides, the first one's first line), each in full under it when
    opened; notes as one compact list."""
    parts = []
    incidents = [(side, incident) for side in SIDES for incident in card.sides[side].incidents]
    if incidents:
        sides = ", ".join(dict.fromkeys(side for side, _ in incidents))
        first = incidents[0][1].partition("\n")[0]
        parts.append(f'<details class="banner bad incidents"><summary title="{e(first)}"><b>{len(incidents)} incident(s)</b> '
                     f"({e(sides)}): {e(first)}</summary>"
                     + "".join(f"<pre><b>{e(side)}</b>: {e(incident)}</pre>" for side, incident in incidents) + "</details>")
    if card.notes:
        parts.append('<ul class="banner warn notes">' + "".join(f"<li>{e(note)}</li>" for note in card.notes) + "</ul>")
    return parts


def _first_screen(card: Scorecard) -> str:
    """The three answers, side by side under the title: how did they do, what did they change, what to ask."""
    parts = []
    for name, view in (("how", _how), ("changed", _what_changed), ("ask", _what_to_ask)):
        try:
            parts.append(view(card))
        except Exception as exc:  # the folded sections below still hold everything
            parts.append(f'<div class="q-{name}" data-testid="{name}"><div class="banner bad">unavailable: '
                         f"{e(type(exc).__name__)}: {e(exc)}</div></div>")
    return '<section class="glance">' + "".join(parts) + "</section>"


def _how(card: Scorecard) -> str:
    built = {side: card.sides[side].build is not None for side in SIDES}  # an unbuilt side's zeros colour nothing
    rows = []
    for row in key_rows(card):
        flag = ('<td class="bad">holdout gap flagged</td>' if row.get("flagged") else
                f'<td class="muted">{e(row.get("why") or "")}</td>' if row.get("flagged") is None else "<td></td>")
        baseline = row.get("baseline") or {}
        cells = "".join(td(row[split][side], (judge({s: v for s, v in row[split].items() if built[s]}, baseline.get(split))
                                              if side == "candidate" else "")
                           + (" split" if side == "starter" else "")) for split in ("dev", "holdout") for side in SIDES)
        rows.append(f'<tr><td><code>{e(row["metric"])}</code></td>{cells}'
                    + td(row["gap"]["candidate"], "split bad" if row.get("flagged") else "split") + td(row["gap"]["reference"])
                    + flag + "</tr>")
    head = ('<thead><tr><th></th><th class="split" colspan="3">dev</th><th class="split" colspan="3">holdout</th>'
            '<th class="split" colspan="2">gap dev − holdout</th><th></th></tr><tr><th>metric</th>'
            + "".join(f'<th class="num{" split" if s == "starter" else ""}">{s}</th>' for _ in range(2) for s in SIDES)
            + '<th class="num split">cand.</th><th class="num">ref.</th><th></th></tr></thead>')
    return (f'<div class="q-how" data-testid="how"><h2>How did they do</h2><table>{head}<tbody>{"".join(rows)}</tbody></table>'
            f'<span class="muted" style="font-size:13px">{legend()} · all {len(card.headline["rows"])} metrics with the '
            'gap test in <a href="#s1-body">1. Headline</a>, each tag on dev and holdout in <a href="#s2-body">2. Per tag</a></span></div>')


def _what_changed(card: Scorecard) -> str:
    view = changed(card)
    parts = ['<div class="q-changed" data-testid="changed"><h2>What did they change</h2>']
    if view["error"]:
        parts.append(f'<div class="banner bad">{e(view["error"])}</div>')
    else:
        tasks = "".join(f'<li>{"task " + str(t["task"]) + ": " if t["task"] is not None else ""}{e(t["title"])} '
                        f'<b>+{t["added"]} −{t["deleted"]}</b> <span class="muted">{e(_files(t["files"]))}</span></li>'
                        for t in view["tasks"]) or "<li>nothing changed</li>"
        parts.append(f'<ul class="tasks">{tasks}</ul>')
        if view["bundle"] is None:
            parts.append(f'<p class="muted" style="font-size:13px;margin:2px 0">no commits to list: {e(view["method"])}</p>')
        else:
            rows = [f'<tr><td><code>{e(c["commit"][:7])}</code></td><td class="num">{e(when(c["time"]))}</td>'
                    f'<td class="subj" title="{e(c["subject"])}">{e(c["subject"])}</td>'
                    f'<td class="num"><span style="color:var(--good)">+{c["added"]}</span> <span style="color:var(--bad)">−{c["deleted"]}</span></td>'
                    f'<td class="num muted">{e(", ".join(f"task {n}" for n in c["tasks"]) or "-")}</td></tr>' for c in view["commits"]]
            more = f'{view["more"]} earlier commit(s) in <a href="#s6-body">6. What changed</a>' if view["more"] else ""
            unc = view["uncommitted"] or {}
            dirty = (f'uncommitted: {unc["files"]} file(s) +{unc["added"]} −{unc["deleted"]}' if unc.get("files") else "")
            parts.append((f'<table class="commits"><tbody>{"".join(rows)}</tbody></table>' if rows else
                          '<p class="muted" style="margin:2px 0">no commits since the bundle</p>')
                         + (f'<p class="muted" style="font-size:13px;margin:2px 0">{" · ".join(x for x in (more, dirty) if x)}</p>'
                            if more or dirty else ""))
    tests = card.tests
    parts.append(f'<p style="font-size:13.5px;margin:4px 0">Own tests: {e(tests.get("line") or tests.get("error") or "not run")}</p></div>')
    return "".join(parts)


def _files(paths: list[str], shown: int = 4) -> str:
    """"chunking.py, config.py" for up to `shown` files, then "and N more"."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(_short(path) for path in paths[:shown]) + more


def _short(path: str) -> str:
    """"exercise/retrieval.py" -> "retrieval.py"; other folders keep their name."""
    return path.removeprefix("exercise/")


def _what_to_ask(card: Scorecard) -> str:
    items = "".join(f'<li>{e(p["text"])} <span class="ev">{e(p["evidence"])} · <a href="{e(p["href"])}">evidence</a></span></li>'
                    for p in prompts(card))
    return ('<div class="q-ask" data-testid="ask"><h2>What to ask</h2>'
            + (f'<ol class="prompts">{items}</ol>' if items else '<p class="muted">nothing stands out: ask which result surprised them</p>')
            + "</div>")


def _gist(gist, card: Scorecard) -> str:
    """A section's one-line gist; a gist that fails leaves the line empty, never the section unavailable."""
    try:
        return gist(card)
    except Exception:  # noqa: BLE001 - a convenience line
        return ""


def _headline_gist(card: Scorecard) -> str:
    flagged = [r["metric"] for r in card.headline["rows"] if r.get("flagged")]
    return (f"{len(card.headline['rows'])} metrics, " + ("holdout gap flagged on " + ", ".join(flagged) if flagged
                                                         else "no holdout gap flagged"))


def _per_tag_gist(card: Scorecard) -> str:
    below = [row["tag"] for row in map(tag_splits, card.per_tag) for values in row["metrics"].values()
             if row["n"].get("holdout") and judge(values["holdout"]) == "bad"]
    return f"{len(card.per_tag)} tag(s), dev and holdout apart" + (
        "; candidate below the starter on holdout: " + ", ".join(dict.fromkeys(below)) if below else "")


def _failures_gist(card: Scorecard) -> str:
    counts = card.failures["counts"]
    worst = max((label for label in counts if label != "ok"), key=lambda label: counts[label]["candidate"], default=None)
    ok = counts.get("ok", {})
    return (f"ok: {ok.get('starter')} → {ok.get('candidate')} (reference {ok.get('reference')})"
            + (f"; the candidate's most common: {worst} ({counts[worst]['candidate']})" if worst and counts[worst]["candidate"] else ""))


def _latency_gist(card: Scorecard) -> str:
    total = card.latency["stages"].get("total")
    return ("total p95 ms: " + " → ".join(num(total[s]["p95"], 1) for s in ("starter", "candidate"))
            + f" (reference {num(total['reference']['p95'], 1)})") if total else ""


def _timeline_gist(card: Scorecard) -> str:
    tl = card.timeline
    return tl["error"] if tl.get("error") else discipline_lines(tl["discipline"])[0]


def _changes_gist(card: Scorecard) -> str:
    t = card.changes.get("totals")
    return card.changes.get("error", "") if not t else f"{t['files']} file(s), +{t['added']} −{t['deleted']} lines"


def _rubric_gist(card: Scorecard) -> str:
    r = card.ratings
    return f"rated {r['rated']} of {r['of']}" + (f": {r['total']} / {r['max']}" if r["rated"] else ", not rated yet")


def _headline(card: Scorecard) -> str:
    head = card.headline
    rows = []
    for row in head["rows"]:
        n, baseline = row.get("n") or {}, row.get("baseline") or {}
        cells = "".join(_value_td(row[split][side], (n.get(split) or {}).get(side),
                                  judge(row[split], baseline.get(split)) if side == "candidate" else "",
                                  baseline.get(split) if side == "candidate" else None)
                        for split in ("dev", "holdout") for side in SIDES)
        rows.append(f"<tr><td><code>{e(row['metric'])}</code></td>{cells}"
                    + td(row["gap"]["candidate"], "bad" if row["flagged"] else "", title="dev − holdout")
                    + td(row["gap"]["reference"]) + _gap_td(row) + "</tr>")
    chart = grouped_bars(head["metrics"], {r["metric"]: r["dev"] for r in head["rows"]},
                         {r["metric"]: r["holdout"] for r in head["rows"]})
    header = ["metric", *(f"dev {s}" for s in SIDES), *(f"holdout {s}" for s in SIDES), "gap cand.", "gap ref.",
              "cand. − ref. gap, 95%"]
    least = (head.get("rule") or {}).get("min_holdout_n", 20)
    return (f'<h2 id="s1">1. Headline</h2><p>{legend()} · bars: dev, black ticks: holdout. Candidate cells: '
            f'<span class="good">&nbsp;near the reference&nbsp;</span> <span class="bad">&nbsp;below the starter&nbsp;</span>; '
            "never green where never abstaining would score as much (read abstention_f1). n: the questions behind "
            "each value. Gap = dev − holdout, flagged when the paired bootstrap 95% interval of the candidate's gap "
            f"minus the reference's lies above zero; judged only on {least} or more holdout questions.</p>"
            + chart + table(header, rows))


def _value_td(value: float | None, n: int | None, cls: str, baseline: float | None) -> str:
    """A headline value with its n beside it, small; the never-abstain baseline, when given, in its title."""
    title = f' title="never abstaining scores {baseline:.3f} here"' if baseline is not None else ""
    count = f' <small class="muted">n&nbsp;{n}</small>' if n is not None else ""
    return f'<td class="num {cls}"{title}>{num(value)}{count}</td>'


def _gap_td(row: dict) -> str:
    """The gap test's cell: the interval, red when it lies above zero; the reason when it was not judged."""
    interval = row.get("interval")
    if row["flagged"] is None or not interval:
        return f'<td class="muted">n/a: {e(row.get("why") or "not judged")}</td>'
    text = f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"
    return f'<td class="bad">{text} flagged</td>' if row["flagged"] else f'<td class="num muted">{text}</td>'


def _per_tag(card: Scorecard) -> str:
    rows, splits = [], list(tag_splits(card.per_tag[0])["n"]) if card.per_tag else ["dev", "holdout"]
    for row in card.per_tag:
        cell = tag_splits(row)
        for i, (name, by_split) in enumerate(cell["metrics"].items()):
            span = len(cell["metrics"])
            lead = (f'<td rowspan="{span}"><b>{e(row["tag"])}</b></td>'
                    + "".join(f'<td rowspan="{span}" class="num">{cell["n"].get(split, 0)}</td>' for split in splits)
                    ) if i == 0 else ""
            cells = "".join(bar_td(by_split.get(split, {}).get(side), side,
                                   # abstention_accuracy is a tag's metric only for unanswerable tags: never abstaining scores 0
                                   (judge(by_split.get(split, {}), 0.0 if name == m.ABSTENTION_ACCURACY else None)
                                    if side == "candidate" else "") + (" split" if side == "starter" else ""))
                            for split in splits for side in SIDES)
            rows.append(f"<tr>{lead}<td><code>{e(name)}</code></td>{cells}</tr>")
    head = (f'<thead><tr><th colspan="{2 + len(splits)}"></th>'
            + "".join(f'<th class="split" colspan="3">{e(split)}</th>' for split in splits)
            + "</tr><tr><th>tag</th>" + "".join(f'<th class="num">{e(split)} n</th>' for split in splits) + "<th>metric</th>"
            + "".join(f'<th class="num{" split" if s == "starter" else ""}">{s}</th>' for _ in splits for s in SIDES)
            + "</tr></thead>")
    return ('<h2 id="s2">2. Per tag</h2><p>Each planted difficulty on dev and on holdout, apart: '
            f"{e(TAG_RECALL)} and the metric the trap moves. A trap fixed on dev but not on holdout was learned, "
            f"not solved.</p><table>{head}<tbody>{''.join(rows)}</tbody></table>")


def _hit(hit: dict, cited: bool = False, answerable: bool = True) -> str:
    badges = []
    if cited and not hit.get("known", True):
        badges.append('<span class="badge x">not retrieved</span>')
    elif cited and not hit["in_context"]:
        badges.append('<span class="badge x">not in context</span>')
    if hit["covers"]:
        badges.append('<span class="badge ev">evidence</span>')
    elif cited and answerable:
        badges.append('<span class="badge x">misses evidence</span>')
    if not cited and hit["in_context"]:
        badges.append('<span class="badge ctx">in context</span>')
    if hit["superseded_by"]:
        badges.append(f'<span class="badge x">superseded by {e(hit["superseded_by"])}</span>')
    rank = f"#{hit['rank']} " if "rank" in hit else ""
    return f"<li>{rank}<code>{e(hit['chunk_id'])}</code> {''.join(badges)}<br><span class=\"snip\">{e(hit['text'])}</span></li>"


def _example(ex: dict) -> str:
    evidence = "".join(f"<li><code>{e(ev['doc_id'])}</code>: <span class=\"snip\">{e(ev['quote'])}</span></li>"
                       for ev in ex["expected"]["evidence"]) or "<li>none: the corpus cannot answer this</li>"
    answerable = bool(ex["expected"]["evidence"])
    cited = "".join(_hit(h, cited=True, answerable=answerable) for h in ex["cited"]) or "<li>nothing cited</li>"
    retrieved = "".join(_hit(h) for h in ex["retrieved"]) or "<li>nothing retrieved</li>"
    error = f'<div class="banner bad">{e(ex["error"])}</div>' if ex["error"] else ""
    return (f'<div class="example" id="{anchor("ex", ex["split"], ex["id"])}"><b>{e(ex["split"])}/{e(ex["id"])}</b> <span class="muted">{e(", ".join(ex["tags"]))} · '
            f'starter: {e(ex["others"].get("starter"))} · reference: {e(ex["others"].get("reference"))}'
            f'{" (the reference misses this too)" if ex.get("reference_misses") else ""}</span>'
            f'<div><b>Q:</b> {e(ex["question"])}</div><div class="ask">Ask: {e(ex["opener"])}</div>{error}'
            f'<div class="cols"><div><b>Expected</b>: {e(ex["expected"]["answer"] or "(abstain)")}'
            f'<br><span class="muted">facts: {e(", ".join(ex["expected"]["facts"]) or "-")}</span><ul class="hits">{evidence}</ul>'
            f'<b>Answer</b>{" (abstained)" if ex["abstained"] else ""}: {e(ex["answer"] or "(empty)")}'
            f'<br><b>Cited</b><ul class="hits">{cited}</ul></div>'
            f'<div><b>Retrieved</b> <span class="muted">(top {len(ex["retrieved"])} of {ex["retrieved_total"]} shown)</span>'
            f'<ul class="hits">{retrieved}</ul></div></div></div>')


def _failures(card: Scorecard) -> str:
    fail = card.failures
    rows = []
    for label, counts in fail["counts"].items():
        s, c, r = counts["starter"], counts["candidate"], counts["reference"]
        if label == "ok":
            cls = "bad" if c < s else "good" if c >= r else ""
        else:
            cls = "bad" if c > s else "good" if c < s else ""
        rows.append(f"<tr><td><code>{e(label)}</code></td>" + td(s) + td(c, cls) + td(r) + "</tr>")
    parts = ['<h2 id="s3">3. Failure attribution</h2><p>The first stage that went wrong, per question, dev and holdout together. '
             "Up to three of the candidate's failures per label, those the reference gets right first.</p>",
             table(["label", *SIDES], rows)]
    for label, examples in fail["examples"].items():
        if examples:
            parts.append(f"<details open><summary><h3><code>{e(label)}</code> ({fail['counts'][label]['candidate']}): "
                         f"{len(examples)} example(s)</h3></summary>" + "".join(_example(ex) for ex in examples) + "</details>")
    return "".join(parts)


def _latency(card: Scorecard) -> str:
    lat = card.latency
    rows = []
    for stage, by_side in lat["stages"].items():
        p95 = {s: by_side[s]["p95"] for s in SIDES}
        slow = p95["candidate"] is not None and all(p95[s] is None or p95["candidate"] > 1.5 * p95[s] + 1 for s in ("starter", "reference"))
        rows.append(f"<tr><td><code>{e(stage)}</code></td>" + "".join(
            td(by_side[s]["p50"], digits=1) + td(by_side[s]["p95"], "bad" if s == "candidate" and slow else "", digits=1)
            for s in SIDES) + "</tr>")
    index = {s: index_line(lat["build_seconds"][s], lat["cached"][s]) for s in SIDES}
    rows.append("<tr><td>index</td>" + "".join(f'<td class="num" colspan="2">{e(index[s])}</td>' for s in SIDES) + "</tr>")
    note = lat.get("build_note", "")  # set when one side's index came from the cache and another's was built cold
    how = {True: "index from cache", False: "index built cold", None: "index: ?"}
    for label, key, digits in (("build_pipeline s (all of it)", "pipeline_seconds", 2), ("index chunks", "chunks", 0),
                               ("peak memory MB", "peak_rss_mb", 0), ("context chars / question", "context_chars", 0)):
        rows.append(f"<tr><td>{label}</td>" + "".join(
            f'<td class="num" colspan="2">{num(lat[key][s], digits)}'
            + (f' <small class="muted">{how[lat["cached"][s]]}</small>' if note and key == "pipeline_seconds" else "")
            + "</td>" for s in SIDES) + "</tr>")
    gen = card.generation
    for label, key in (("generator", "generator"), ("model", "model"), ("endpoint", "endpoint")):
        rows.append(f"<tr><td>{label}</td>" + "".join(f'<td class="num" colspan="2"><code>{e(gen[key][s] or "-")}</code></td>'
                                                     for s in SIDES) + "</tr>")
    for kind, tokens in gen["tokens"].items():
        rows.append(f"<tr><td>{kind} tokens / question</td>" + "".join(
            td(tokens[s]["p50"] if tokens[s] else None, digits=0) + td(tokens[s]["p95"] if tokens[s] else None, digits=0)
            for s in SIDES) + "</tr>")
    rows.append("<tr><td>cost / question USD</td>" + "".join(
        f'<td class="num" colspan="2">{e(usd(gen["cost_per_question_usd"][s]))}</td>' for s in SIDES) + "</tr>")
    rows.append("<tr><td>model calls (cache hits)</td>" + "".join(
        f'<td class="num" colspan="2">{num(gen["llm_calls"][s])} ({num(gen["llm_cache_hits"][s])})</td>' for s in SIDES) + "</tr>")
    header = ["stage", *(f"{s} {p}" for s in SIDES for p in ("p50", "p95"))]
    return ('<h2 id="s4">4. Latency and cost</h2><p>Milliseconds per stage over every question but the first (warm-up). '
            "Red: the candidate's p95 is over 1.5× both others'. build_pipeline is the whole build (model load, "
            "chunking, index); index is the index alone, built or loaded from the embedding cache. Tokens (p50, p95) "
            "and cost over every question; a reply from the cache costs nothing."
            + (f" Build times are {e(note)}." if note else "")
            + "</p>" + table(header, rows))


def _timeline(card: Scorecard) -> str:
    tl = card.timeline
    if tl.get("error"):
        return f'<h2 id="s5">5. Session timeline</h2><div class="banner bad">{e(tl["error"])}</div>'
    d = tl["discipline"]
    lines = "".join(f"<li>{e(line)}</li>" for line in discipline_lines(d))
    unmeasured = {c.split()[0] for c in d.get("unmeasured_commits", [])}
    chart = timeline_chart(tl["runs"], tl["metrics"], tl.get("commits"), unmeasured)
    rows = []
    for r in tl["runs"]:
        cls = "" if r["complete"] else "warn"
        rows.append(f'<tr class="{cls}"><td><code>{e(r["run_id"])}</code></td><td class="num">{e(r["time"][:10])} {e(r["time"][11:19])}</td>'
                    f'<td><code>{e((r["commit"] or "-")[:7])}</code>{"*" if r["dirty"] else ""}</td>'
                    f'<td>{"yes" if r["complete"] else "no"}</td><td><code>{e(r["golden"].rsplit("/", 1)[-1])}</code></td>'
                    f'<td>{e(", ".join(r["config_changes"]) or "-")}</td>'
                    + "".join(_moved_td(r["metrics"].get(m), r["moved"].get(m)) for m in tl["metrics"]) + "</tr>")
    return ('<h2 id="s5">5. Session timeline</h2><p>Every <code>ragkata eval</code> the candidate ran, from their runs/ folder. '
            "Dashed lines are the candidate's commits (red: no run measured it); hollow points are incomplete runs or "
            f"runs on another golden file. Times in UTC. Hand-over: {e(tl.get('handover') or 'the first commit')}.</p>"
            f"<ul>{lines}</ul>{chart}"
            + '<div class="small">' + table(["run", "date and time", "commit", "complete", "golden", "config changed", *tl["metrics"]], rows, 6)
            + '</div><p class="muted">* run on uncommitted changes. Small numbers: the move since the run before, on the same golden file.</p>')


def _moved_td(value: float | None, delta: float | None) -> str:
    if delta is None or abs(delta) < 0.0005:
        return td(value)
    colour = "var(--good)" if delta > 0 else "var(--bad)"
    return f'<td class="num">{num(value)}<br><small style="color:{colour}">{delta:+.3f}</small></td>'


def _diff(text: str) -> str:
    out = []
    for line in text.splitlines():
        cls = "a" if line.startswith("+") and not line.startswith("+++") else "d" if line.startswith("-") and not line.startswith("---") else ""
        out.append(f'<span class="{cls}">{e(line)}</span>' if cls else e(line))
    return "\n".join(out)


def _changes(card: Scorecard) -> str:
    ch, tests = card.changes, card.tests
    parts = ['<h2 id="s6">6. What changed</h2>']
    if ch.get("error"):
        parts.append(f'<div class="banner bad">{e(ch["error"])}</div>')
    else:
        t = ch["totals"]
        parts.append(f"<p><b>{t['files']}</b> file(s), <b>+{t['added']} −{t['deleted']}</b> lines · {e(ch['method'])}</p>")
        rows = [f"<tr><td><code>{e(x['path'])}</code></td><td>{e(x['status'])}</td><td>{e(_file_tasks(x))}</td>"
                f"{td(x['added'])}{td(x['deleted'])}</tr>" for x in ch["files"]]
        parts.append(table(["file", "status", "tasks", "+", "−"], rows, 3))
        if ch.get("bundle"):
            commits = [f'<tr><td><code>{e(c["commit"][:7])}</code></td><td>{e(when(c["time"]))}</td><td>{e(c["subject"])}</td>'
                       f'<td>{e(", ".join(_short(f) for f in c["files"]))}</td>{td(c["added"])}{td(c["deleted"])}</tr>'
                       for c in ch.get("commits", [])]
            shown = len(commits)
            parts.append(f"<h3>The candidate's commits since the bundle commit {e(ch['bundle'][:7])}</h3>"
                         + (f'<p class="muted">the newest {shown} of {ch["commits_total"]}</p>' if ch.get("commits_total", shown) > shown else "")
                         + '<div class="small">' + table(["commit", "UTC", "subject", "files", "+", "−"], commits, 4) + "</div>")
        for x in ch["files"]:
            parts.append(f"<details><summary><code>{e(x['path'])}</code> (+{x['added']} −{x['deleted']})</summary>"
                         f'<pre class="diff">{_diff(x["diff"])}</pre></details>')
    ok = tests.get("ok")
    cls = "good" if ok else "bad" if tests.get("ran") else "warn"
    parts.append(f'<div class="banner {cls}"><b>Candidate\'s tests</b>: {e(tests.get("line") or tests.get("error"))}'
                 + (f' · <code>{e(tests["command"])}</code>' if tests.get("command") else "") + "</div>")
    return "".join(parts)


def _file_tasks(entry: dict) -> str:
    """"1, 3" for the tasks a file's changes belong to, "-" for none (an older scorecard: "")."""
    tasks = [str(part["task"]) for part in entry.get("tasks", []) if part["task"] is not None]
    return ", ".join(tasks) or ("-" if "tasks" in entry else "")


def _rubric(card: Scorecard) -> str:
    r = card.ratings
    total = (f"Rated {r['rated']} of {r['of']}: <b>{r['total']} / {r['max']}</b> (mean {r['mean']})" if r["rated"]
             else "Not rated yet: fill <code>ratings.template.json</code>, then "
                  "<code>ragkata-grader grade --out &lt;dir&gt; --ratings &lt;file&gt; --render-only</code>")
    parts = [f'<h2 id="s7">7. Rubric</h2><p>{total}{" · from <code>" + e(r["file"]) + "</code>" if r.get("file") else ""}. '
             "Evidence is pre-filled from the data above; the rating is the interviewer's.</p>"]
    for row in card.rubric:
        score = row["score"]
        levels = "".join(f'<div class="{"on" if score == int(k) else ""}"><b>{k}</b> {e(v)}</div>' for k, v in row["levels"].items())
        evidence = "".join(f"<li>{e(line)}</li>" for line in row["evidence"])
        note = f"<p><b>Note:</b> {e(row['note'])}</p>" if row["note"] else ""
        parts.append(f'<div class="crit" id="{anchor("rubric", row["id"])}"><span class="score">{score if score is not None else "–"} / 4</span>'
                     f"<h3>{e(row['title'])} <span class=\"muted\"><code>{e(row['id'])}</code></span></h3>"
                     f'<ul>{evidence}</ul><div class="levels">{levels}</div>{note}</div>')
    return "".join(parts)
