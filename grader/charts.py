"""Inline SVG charts for the HTML scorecard: grouped bars for the headline, lines for the session timeline.

Pure functions from numbers to an <svg> string; every label is escaped. Left out on purpose: axes
libraries, JavaScript and interactivity beyond SVG <title> tooltips, which browsers show on hover.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

SIDE_COLOURS = {"starter": "#8c959f", "candidate": "#0969da", "reference": "#1a7f37"}
LINE_COLOURS = ("#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#0a7d8c")


def _t(x: float, y: float, text: str, anchor: str = "middle", size: int = 12, colour: str = "#57606a", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{colour}" {extra}>'
            f"{escape(text)}</text>")


def grouped_bars(metrics: list[str], values: dict[str, dict[str, float | None]], ticks: dict[str, dict[str, float | None]],
                 width: int = 1180, height: int = 250) -> str:
    """One group per metric, one bar per side (values), a black tick per side (ticks, e.g. holdout)."""
    left, right, top, bottom = 40, 10, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    group = plot_w / max(1, len(metrics))
    bar = min(26.0, group / 4.2)
    y = lambda v: top + plot_h * (1 - max(0.0, min(1.0, v)))  # noqa: E731
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="headline metrics">']
    for level in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#d0d7de" '
                     f'stroke-width="{1.2 if level == 0 else 0.6}"/>')
        parts.append(_t(left - 6, y(level) + 4, f"{level:.2f}", "end", 11))
    for i, metric in enumerate(metrics):
        x0 = left + i * group + (group - 3 * bar) / 2
        for j, side in enumerate(SIDE_COLOURS):
            v, tick = values[metric].get(side), ticks[metric].get(side)
            x = x0 + j * bar
            if v is not None:
                parts.append(f'<rect x="{x + 1:.1f}" y="{y(v):.1f}" width="{bar - 2:.1f}" height="{y(0) - y(v):.1f}" '
                             f'fill="{SIDE_COLOURS[side]}" rx="2"><title>{escape(f"{metric} {side} dev {v:.3f}")}</title></rect>')
            if tick is not None:
                parts.append(f'<line x1="{x:.1f}" x2="{x + bar:.1f}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#1f2328" '
                             f'stroke-width="2.5"><title>{escape(f"{metric} {side} holdout {tick:.3f}")}</title></line>')
        parts.append(_t(left + (i + 0.5) * group, height - bottom + 16, metric, size=11, colour="#1f2328"))
    lx = left
    for side, colour in SIDE_COLOURS.items():
        parts.append(f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{colour}" rx="2"/>')
        parts.append(_t(lx + 16, height - 12, f"{side} (dev)", "start", 12, "#1f2328"))
        lx += 150
    parts.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{height - 16}" y2="{height - 16}" stroke="#1f2328" stroke-width="2.5"/>')
    parts.append(_t(lx + 22, height - 12, "holdout", "start", 12, "#1f2328"))
    parts.append("</svg>")
    return "".join(parts)


def timeline_chart(runs: list[dict], metrics: list[str], commits: list[dict] | None, unmeasured: set[str],
                   width: int = 1180, height: int = 330) -> str:
    """Key metrics of each run over time; dashed verticals for the candidate's commits (red when no run
    measured them; a commit's "theirs" says whose it is, all but the first when absent). An axis that
    spans more than one day labels its ticks with the date."""
    left, right, top, bottom = 44, 40, 44, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [datetime.fromisoformat(r["time"]).timestamp() for r in runs]
    marks = [(datetime.fromisoformat(c["time"]).timestamp(), c) for i, c in enumerate(commits or [])
             if c.get("theirs", i > 0) and c.get("pipeline", True)]
    span = times + [t for t, _ in marks]
    lo, hi = (min(span), max(span)) if span else (0.0, 1.0)
    if hi - lo < 60:
        lo, hi = lo - 300, hi + 300
    pad = (hi - lo) * 0.03
    lo, hi = lo - pad, hi + pad
    x = lambda t: left + plot_w * (t - lo) / (hi - lo)  # noqa: E731
    y = lambda v: top + plot_h * (1 - max(0.0, min(1.0, v)))  # noqa: E731
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="session timeline">']
    for level in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(level):.1f}" y2="{y(level):.1f}" stroke="#d0d7de" stroke-width="0.6"/>')
        parts.append(_t(left - 6, y(level) + 4, f"{level:.2f}", "end", 11))
    day = lambda t: datetime.fromtimestamp(t, timezone.utc).date()  # noqa: E731
    clock = ("%d %b %H:%M" if day(lo) != day(hi) else "%H:%M" if hi - lo > 1200 else "%H:%M:%S")  # seconds: short sessions
    for n in range(7):
        t = lo + (hi - lo) * n / 6
        parts.append(_t(x(t), top + plot_h + 16, datetime.fromtimestamp(t, timezone.utc).strftime(clock), size=11))
    if day(lo) == day(hi) and span:
        parts.append(_t(width - right, top + plot_h + 32, day(lo).isoformat() + " UTC", "end", 11))
    last_x, level = -1e9, 0
    for t, commit in sorted(marks, key=lambda m: m[0]):
        level = (level + 1) % 3 if x(t) - last_x < 60 else 0  # stack labels of commits close in time
        last_x = x(t)
        bad = commit["commit"][:7] in unmeasured
        colour = "#cf222e" if bad else "#8c959f"
        label = f"commit {commit['commit'][:7]} {commit['subject']}" + (" (no run measured it)" if bad else "")
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 8}" y2="{top + plot_h}" stroke="{colour}" '
                     f'stroke-dasharray="4 3" stroke-width="1.2"><title>{escape(label)}</title></line>')
        parts.append(_t(x(t), top - 12 - 11 * level, commit["commit"][:7], size=10, colour=colour))
    for i, metric in enumerate(metrics):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        points = [(x(t), y(r["metrics"][metric]), r) for t, r in zip(times, runs) if r["metrics"].get(metric) is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for px, py, r in points:
            hollow = not r["complete"] or not r["golden"].endswith("dev.jsonl")
            tip = f"{r['run_id']} {metric} {r['metrics'][metric]:.3f}" + (f" | {', '.join(r['config_changes'])}" if r["config_changes"] else "")
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4.5" fill="{"#fff" if hollow else colour}" stroke="{colour}" '
                         f'stroke-width="2"><title>{escape(tip)}</title></circle>')
        lx = left + i * 190
        parts.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{height - 16}" y2="{height - 16}" stroke="{colour}" stroke-width="3"/>')
        parts.append(_t(lx + 24, height - 12, metric, "start", 12, "#1f2328"))
    if not runs:
        parts.append(_t(width / 2, top + plot_h / 2, "no evaluation runs found", size=16, colour="#cf222e"))
    parts.append("</svg>")
    return "".join(parts)
