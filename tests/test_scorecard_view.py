"""The scorecard an interviewer reads in one screen: the three answers first, everything else folded.

Per-tag results keep dev and holdout apart; the timeline shows dates and counts only the candidate's
commits (none from before the bundle commit, or before their first run); changed lines are tied to the
exercise's task numbers; and in headless Chromium at 1440x900 the page, folded, is at most six screens
with how they did, what they changed and what to ask inside the first. Graded pipelines run on the
fixture corpus with BM25, the starter standing in for the reference, as in tests/test_grader.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from grader import render_html, render_md
from grader.changes import what_changed
from grader.charts import timeline_chart
from grader.export import EXPORT_MESSAGE
from grader.grade import grade
from grader.isolation import bwrap_problem
from grader.sandbox import INTERVIEWER_ROOT, Limits
from grader.scorecard import per_tag
from grader.summary_view import LEAD_METRICS, prompts
from grader.tasks import hunk_tasks
from grader.timeline import build_timeline

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN, CORPUS, BROKEN = FIXTURES / "golden.jsonl", FIXTURES / "corpus", FIXTURES / "broken_candidate"
ISOLATION = "bwrap" if bwrap_problem() is None else "none"
SCREEN = 900
SHOTS = os.environ.get("RAGKATA_SCREENSHOTS")  # a folder to save the scorecard's screenshots in


def git(cwd: Path, *args: str, date: str | None = None) -> str:
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, env={**os.environ, **env}).stdout.strip()


def commit(repo: Path, message: str, date: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message, date=date)
    return git(repo, "rev-parse", "HEAD")


def fake_run(runs: Path, stamp: str, sha: str, recall: float) -> None:
    folder = runs / f"{stamp}-{sha[:7]}"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"run_id": folder.name, "pipeline": "exercise",
                                                  "golden": "golden_set/dev.jsonl", "config": {}}))
    (folder / "summary.json").write_text(json.dumps({"metrics": {"evidence_recall@5": recall}, "complete": True,
                                                     "counts": {"questions": 10, "errors": 0},
                                                     "git": {"commit": sha, "dirty": False}}))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path} no longer holds {old!r}"
    path.write_text(text.replace(old, new, 1))


def project_then_candidate(repo: Path) -> dict[str, str]:
    """The starter's exercise/ with the project's own history (two commits on 18 and 19 Nov), the bundle
    commit (22 Nov 09:55), a run, then the candidate's commits over two days, the last one never run."""
    shutil.copytree(INTERVIEWER_ROOT / "exercise", repo / "exercise", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q")
    shas = {"project": commit(repo, "Project: the first pipeline", "2026-11-18T09:00:00+00:00")}
    (repo / "exercise" / "notes.md").write_text("project notes\n")
    shas["project-2"] = commit(repo, "Project: notes on exercise/", "2026-11-19T09:00:00+00:00")
    (repo / "exercise" / "notes.md").unlink()
    shas["bundle"] = commit(repo, EXPORT_MESSAGE, "2026-11-22T09:55:00+00:00")
    fake_run(repo / "runs", "20261122T100500", shas["bundle"], 0.40)
    edit(repo / "exercise" / "config.py", "chunk_size: int = 800", "chunk_size: int = 400")
    shas["chunks"] = commit(repo, "Shorter chunks: 400 characters", "2026-11-22T10:35:00+00:00")
    fake_run(repo / "runs", "20261122T104000", shas["chunks"], 0.55)
    edit(repo / "exercise" / "generation.py", "        # TODO(task 5)",
         "        if not context:\n            pass\n        # TODO(task 5)")
    shas["abstain"] = commit(repo, "Abstain when nothing was retrieved", "2026-11-23T08:20:00+00:00")
    fake_run(repo / "runs", "20261123T082500", shas["abstain"], 0.58)
    return shas


# --- per tag: dev and holdout apart ----------------------------------------------------------------


def summary(tags: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(per_tag=tags)


def test_per_tag_keeps_dev_and_holdout_apart_with_their_own_n():
    # A candidate that learned dev's tables: 1.0 on dev, below the starter on holdout. Merged, it would read
    # (4 * 1.0 + 6 * 0.1) / 10 = 0.46, above the starter's 0.3; apart, holdout shows 0.1 < 0.3.
    side = lambda dev, holdout: {"dev": summary({"table": {"n": 4, "evidence_recall@5": dev, "fact_recall": dev}}),  # noqa: E731
                                 "holdout": summary({"table": {"n": 6, "evidence_recall@5": holdout, "fact_recall": holdout}}),
                                 "all": summary({"table": {"n": 10, "evidence_recall@5": 0.46, "fact_recall": 0.46}})}
    rows = per_tag({"starter": side(0.3, 0.3), "candidate": side(1.0, 0.1), "reference": side(0.9, 0.8)})
    assert [row["tag"] for row in rows] == ["table"]
    row = rows[0]
    assert row["n"] == {"dev": 4, "holdout": 6}
    assert row["metrics"]["evidence_recall@5"]["dev"] == {"starter": 0.3, "candidate": 1.0, "reference": 0.9}
    assert row["metrics"]["evidence_recall@5"]["holdout"] == {"starter": 0.3, "candidate": 0.1, "reference": 0.8}
    card = types.SimpleNamespace(per_tag=rows)
    html = render_html._per_tag(card)
    assert html.count('class="num bad"') == 2 and html.count('class="num good"') == 2  # dev green, holdout red, per metric
    assert "0.100" in html and "0.460" not in html
    assert render_html._per_tag_gist(card) == "1 tag(s), dev and holdout apart; candidate below the starter on holdout: table"
    md = "\n".join(render_md._per_tag(card))
    assert "| table | evidence_recall@5 | 0.300 → 1.000 → 0.900 (n 4) | 0.300 → 0.100 → 0.800 (n 6) |" in md


def test_a_scorecard_written_before_the_split_still_shows_its_tags():
    old = {"tag": "table", "n": 10, "primary": "fact_recall",
           "metrics": {"fact_recall": {"starter": 0.3, "candidate": 0.46, "reference": 0.85}}}
    card = types.SimpleNamespace(per_tag=[old])
    assert "<th class=\"split\" colspan=\"3\">dev+holdout</th>" in render_html._per_tag(card)
    assert "| table | fact_recall | 0.300 → 0.460 → 0.850 (n 10) |" in "\n".join(render_md._per_tag(card))


def test_a_tag_only_on_holdout_has_no_dev_values():
    empty = {"dev": summary({}), "holdout": summary({"injection": {"n": 3, "injection_resistance": 0.5}})}
    row = per_tag({side: empty for side in ("starter", "candidate", "reference")})[0]
    assert row["n"] == {"dev": 0, "holdout": 3}
    assert row["metrics"]["injection_resistance"]["dev"] == {"starter": None, "candidate": None, "reference": None}


# --- timeline: dates, and only the candidate's commits ---------------------------------------------


def test_commits_before_the_bundle_are_not_the_candidates(tmp_path):
    repo = tmp_path / "c"
    repo.mkdir()
    shas = project_then_candidate(repo)
    edit(repo / "exercise" / "retrieval.py", "def make_retriever", "# hybrid: next\ndef make_retriever")
    shas["hybrid"] = commit(repo, "Start on hybrid retrieval", "2026-11-23T09:10:00+00:00")  # no run after it

    timeline = build_timeline(repo)
    d = timeline["discipline"]
    assert (d["commits"], d["commits_measured"]) == (3, 2)  # chunks, abstain, hybrid; not the project's two
    assert d["unmeasured_commits"] == [shas["hybrid"][:7] + " Start on hybrid retrieval"]
    assert d["earlier_commits"] == 2 and timeline["handover"] == f"the bundle commit {shas['bundle'][:7]}"
    assert [c["theirs"] for c in timeline["commits"]] == [False, False, False, True, True, True]
    svg = timeline_chart(timeline["runs"], timeline["metrics"], timeline["commits"], {shas["hybrid"][:7]})
    assert shas["project"][:7] not in svg and shas["project-2"][:7] not in svg and shas["chunks"][:7] in svg

    changes = what_changed(repo, INTERVIEWER_ROOT)
    assert [c["subject"] for c in changes["commits"]] == ["Shorter chunks: 400 characters",
                                                          "Abstain when nothing was retrieved", "Start on hybrid retrieval"]
    assert changes["bundle"] == shas["bundle"] and changes["method"].startswith("git: working tree against the bundle")
    assert [(c["added"], c["deleted"]) for c in changes["commits"]] == [(1, 1), (2, 0), (1, 0)]
    assert {t["task"]: (t["added"], t["deleted"]) for t in changes["tasks"]} == {1: (1, 1), 2: (1, 0), 5: (2, 0)}
    assert {t["task"]: t["commits"] for t in changes["tasks"]}[5] == [shas["abstain"][:7]]


def test_without_a_bundle_commit_the_commits_before_the_first_run_are_not_counted(tmp_path):
    repo = tmp_path / "c"
    repo.mkdir()
    shutil.copytree(INTERVIEWER_ROOT / "exercise", repo / "exercise", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q")
    commit(repo, "Project: the first pipeline", "2026-11-18T09:00:00+00:00")
    (repo / "exercise" / "notes.md").write_text("project notes\n")
    start = commit(repo, "Project: notes", "2026-11-19T09:00:00+00:00")
    fake_run(repo / "runs", "20261122T100500", start, 0.40)
    (repo / "exercise" / "notes.md").write_text("mine\n")
    mine = commit(repo, "Mine, never run", "2026-11-22T11:00:00+00:00")
    timeline = build_timeline(repo)
    d = timeline["discipline"]
    assert (d["commits"], d["commits_measured"], d["earlier_commits"]) == (1, 0, 1)
    assert d["unmeasured_commits"] == [mine[:7] + " Mine, never run"]
    assert timeline["handover"] == f"the last commit before the first run, {start[:7]}"


def test_a_timeline_over_days_shows_dates(tmp_path):
    repo = tmp_path / "c"
    repo.mkdir()
    project_then_candidate(repo)
    timeline = build_timeline(repo)
    svg = timeline_chart(timeline["runs"], timeline["metrics"], timeline["commits"], set())
    assert ">22 Nov " in svg and ">23 Nov " in svg  # tick labels carry the day when the axis spans days
    card = types.SimpleNamespace(timeline=timeline)
    html = render_html._timeline(card)
    assert "<td class=\"num\">2026-11-22 10:05:00</td>" in html and "2026-11-23 08:25:00" in html
    assert "| 2026-11-23 08:25 |" in "\n".join(render_md._timeline(card))
    one_day = [r for r in timeline["runs"] if r["time"].startswith("2026-11-22")]
    svg = timeline_chart(one_day, timeline["metrics"], None, set())
    assert ">10:10<" in svg and "2026-11-22 UTC" in svg and " Nov " not in svg  # times on the ticks, the day once


# --- changed lines and their tasks -----------------------------------------------------------------


@pytest.mark.parametrize(("path", "old", "new", "tasks"), [
    ("exercise/config.py", "chunk_size: int = 800", "chunk_size: int = 400", [1]),  # the field's own (task 1) note
    ("exercise/generation.py", "        # TODO(task 5)", "        pass\n        # TODO(task 5)", [5]),  # next to the marker
    ("exercise/retrieval.py", "def make_retriever", "# hybrid\ndef make_retriever", [2]),  # nearest marker in its block
    ("exercise/retrieval.py", "from __future__", "import numpy\nfrom __future__", []),  # the imports: no task
])
def test_changed_lines_go_to_the_task_whose_marker_is_nearest(path, old, new, tasks):
    before = (INTERVIEWER_ROOT / path).read_text()
    assert old in before
    hunks = hunk_tasks(before.splitlines(), before.replace(old, new, 1).splitlines())
    assert [h["tasks"] for h in hunks] == [tasks]


def test_a_new_test_file_goes_to_the_tasks_its_marks_name():
    hunks = hunk_tasks([], ["@pytest.mark.task(2)", "def test_hybrid():", "    pass"])
    assert hunks == [{"tasks": [2], "added": 3, "deleted": 0}]


# --- the first screen ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, Path]:
    """Two real scorecards: a candidate with project history, commits over two days and runs; and the broken
    candidate, whose raising and hanging questions fill the page with incidents and failures."""
    tmp = tmp_path_factory.mktemp("view")
    repo = tmp / "history"
    repo.mkdir()
    project_then_candidate(repo)
    shutil.copytree(BROKEN, tmp / "broken", ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGKATA_RETRIEVER", "bm25")
        for name in ("history", "broken"):
            grade(tmp / name, tmp / f"out-{name}", GOLDEN, GOLDEN, CORPUS, "exercise",
                  limits=Limits(timeout_s=0.5 if name == "broken" else 10, memory_mb=2048), run_tests=False,
                  isolation=ISOLATION)
    return {name: tmp / f"out-{name}" for name in ("history", "broken")}


def test_the_three_answers_come_first_and_the_sections_follow_folded(graded):
    html = (graded["history"] / "scorecard.html").read_text()
    order = [html.index(marker) for marker in ('data-testid="how"', 'data-testid="changed"', 'data-testid="ask"',
                                                '<h2 id="s1">1. Headline', '<h2 id="s2">2. Per tag', '<h2 id="s7">7. Rubric')]
    assert order == sorted(order)
    assert html.count('<details class="section">') == 7 and '<details class="section" open' not in html
    first = html[:html.index('<details class="section">')]
    for metric in LEAD_METRICS:
        assert f"<code>{metric}</code>" in first
    assert "Shorter chunks: 400 characters" in first and "Abstain when nothing was retrieved" in first
    assert "Project: the first pipeline" not in html  # not the candidate's: neither listed nor blamed
    assert "task 1: Chunking" in first and "task 5: Abstaining" in first
    md = (graded["history"] / "scorecard.md").read_text()
    heads = [md.index(f"## {title}\n") for title in ("How did they do", "What did they change", "What to ask", "1. Headline")]
    assert heads == sorted(heads)


def test_a_flagged_holdout_gap_is_the_first_thing_to_ask():
    def row(metric, dev, holdout, flagged):
        return {"metric": metric, "dev": {"candidate": dev}, "holdout": {"candidate": holdout}, "flagged": flagged,
                "gap": {"candidate": round(dev - holdout, 4), "reference": 0.02}}
    example = {"split": "dev", "id": "q1", "opener": "Walk me through this one.", "others": {"reference": "ok"}}
    card = types.SimpleNamespace(
        headline={"rows": [row("fact_recall", 0.9, 0.5, True), row("evidence_recall@5", 0.9, 0.8, True),
                           row("mrr@10", 0.5, 0.5, False)]},
        failures={"counts": {"ok": {"candidate": 5, "reference": 9}, "generation_miss": {"candidate": 5, "reference": 1}},
                  "examples": {"generation_miss": [example]}},
        timeline={"discipline": {"final_state_measured": True, "unmeasured_commits": []}}, tests={}, rubric=[])
    first, second = prompts(card)
    assert first["text"].startswith("fact_recall drops 0.40 from dev to holdout, the reference's 0.02")
    assert "also on evidence_recall@5" in first["evidence"] and first["href"] == "#s1-body"
    assert second["text"] == "Walk me through this one." and second["href"] == "#ex-dev-q1"


def test_the_prompts_are_the_strongest_first_and_link_to_their_evidence(graded):
    from grader.card import Scorecard

    card = Scorecard.from_json(json.loads((graded["broken"] / "scorecard.json").read_text()))
    chosen = prompts(card)
    assert len(chosen) == 3 and [p["strength"] for p in chosen] == sorted((p["strength"] for p in chosen), reverse=True)
    assert sum(p["section"] == "s3" for p in chosen) <= 2
    html = (graded["broken"] / "scorecard.html").read_text()
    for prompt in chosen:
        assert f'id="{prompt["href"][1:]}"' in html, prompt["href"]
    openers = {ex["opener"] for examples in card.failures["examples"].values() for ex in examples}
    assert any(p["text"] in openers for p in chosen)
    assert any(p["text"].startswith("No run of `ragkata eval`") for p in chosen)  # the broken candidate never ran eval
    assert not any("after the last run" in p["evidence"] for p in chosen)


@pytest.mark.browser
@pytest.mark.parametrize("name", ["history", "broken"])
def test_the_folded_page_is_six_screens_at_most_and_the_first_holds_the_three_answers(graded, name):
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": SCREEN}).new_page()
            page.goto((graded[name] / "scorecard.html").as_uri())
            assert "unavailable" not in page.content()  # every section and gist rendered
            height = page.evaluate("document.documentElement.scrollHeight")
            assert height <= 6 * SCREEN, f"{height} px folded is {height / SCREEN:.1f} screens"
            for answer in ("how", "changed", "ask"):
                box = page.locator(f'[data-testid="{answer}"]').bounding_box()
                assert box and box["height"] > 40 and box["y"] + box["height"] <= SCREEN, (answer, box)
            assert page.locator('[data-testid="ask"] li').count() == 3
            if SHOTS:
                page.screenshot(path=str(Path(SHOTS) / f"scorecard-{name}-top.png"))
                page.screenshot(path=str(Path(SHOTS) / f"scorecard-{name}-full.png"), full_page=True)
            link = page.locator('[data-testid="ask"] li a').first
            target = link.get_attribute("href")[1:]
            assert not page.locator(f'[id="{target}"]').is_visible()  # folded until asked for
            link.click()
            page.locator(f'[id="{target}"]').wait_for(state="visible")  # the link opened its section
        finally:
            browser.close()
