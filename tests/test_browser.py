"""The playground page in a real browser: Debian's headless Chromium driven by Playwright, against uvicorn.

The server runs the starter pipeline (BM25) over the fixture corpus, with two small runs of the fake
pipeline in a temporary runs/. A second server streams a scripted model's answer, held back half-way
until the test has seen the first part, over the fixture corpus plus a document carrying HTML: neither
the model's <img onerror> and <script> nor the document's may ever run. Skipped when /usr/bin/chromium
is absent, except under CI, where a missing browser fails the suite instead of hiding a broken test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import threading
import time
import types
from pathlib import Path
from typing import Iterator, Sequence

import httpx
import pytest
import uvicorn

from exercise.config import Config
from exercise.contracts import Chunk, Generation, Usage
from harness.runner import start_run
from harness.service import create_app

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FIXTURES = Path(__file__).parent / "fixtures"
CORPUS, GOLDEN = FIXTURES / "corpus", FIXTURES / "golden.jsonl"
TIMEOUT_MS = 10_000
SCREENSHOTS = os.environ.get("RAGKATA_SCREENSHOTS")  # a folder to save screenshots in, for a person to look at


def require_chromium() -> None:
    if CHROMIUM.is_file():
        return
    message = f"{CHROMIUM} is absent; install Debian's Chromium (apt-get install chromium) to run the browser tests"
    if os.environ.get("CI"):
        pytest.fail(f"{message}. CI installs it in .ci/run, so a missing browser here is a broken set-up, not a skip")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_runs(runs: Path) -> list[str]:
    """Two runs of the fake pipeline (from conftest): a baseline over the corpus without its lifecycle guide,
    retrieving a single hit, then the full corpus with the default 20, so that some questions flip."""
    from conftest import build_pipeline  # the suite's one deterministic fake

    partial = runs.parent / "corpus-without-lifecycle"
    shutil.copytree(CORPUS, partial)
    (partial / "guides" / "lifecycle.md").unlink()

    fake = types.ModuleType("fake_pipeline")
    fake.build_pipeline = build_pipeline  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "fake_pipeline", fake)
        patch.setenv("RAGKATA_RUNS_DIR", str(runs))
        ids = []
        for corpus, config in ((partial, Config(k_retrieve=1, k_context=1)), (CORPUS, Config())):
            run = start_run(GOLDEN, corpus, config, "fake_pipeline")
            for _ in run.questions():
                pass
            run.finish()
            ids.append(run.spec.run_id)
    return ids


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn serving `app` in a background thread; yields its base URL."""
    port = free_port()
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not web.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 15 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of uvicorn serving create_app() in a background thread, and the two run ids."""
    require_chromium()
    runs = tmp_path_factory.mktemp("browser") / "runs"
    run_ids = make_runs(runs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGKATA_RUNS_DIR", str(runs))
        app = create_app(pipeline="exercise", corpus=CORPUS, golden=GOLDEN, config=Config(retriever="bm25"))
        with serving(app) as base:
            yield base, run_ids


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextlib.contextmanager
def opened_page(browser, url: str):
    """A 1440x900 page at `url`; on leaving, it fails the test if the page raised a JavaScript error."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.goto(url)
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser, server):
    base, _ = server
    with opened_page(browser, base + "/") as opened:
        yield opened


def ask_golden(page, golden_id: str) -> None:
    page.wait_for_selector(f'[data-testid="golden-select"] option[value="{golden_id}"]', state="attached")
    page.select_option('[data-testid="golden-select"]', golden_id)
    page.click('[data-testid="ask-button"]')
    page.wait_for_selector('[data-testid="citation"]')


def test_asking_a_golden_question_shows_answer_citations_and_evidence(page, server):
    base, _ = server
    ask_golden(page, "fx-01")
    question = page.input_value('[data-testid="question"]')
    assert question == "How long until my files move to the archive tier?"
    expected = httpx.post(base + "/api/ask", json={"question": question}).json()
    assert page.inner_text('[data-testid="answer"]').strip() == expected["answer"].strip()
    assert "90 days" in expected["answer"]
    citations = page.locator('[data-testid="citation"]')
    assert citations.count() == len(expected["citations"]) > 0
    assert expected["citations"][0] in citations.first.inner_text()
    evidence_hit = page.locator('[data-testid="hit"]', has=page.locator('[data-testid="evidence-badge"]')).first
    assert evidence_hit.get_attribute("data-chunk-id") == "guides/lifecycle.md#0"
    quote = evidence_hit.locator('mark[data-testid="evidence-quote"]')
    assert "Objects transition to cold-vault after 90 days" in quote.first.inner_text()
    assert page.locator('[data-testid="hit"]').count() == len(expected["retrieved"])
    assert "total" in page.inner_text('[data-testid="latency"]')
    assert "After 90 days, to cold-vault." in page.inner_text('[data-testid="expected"]')


def test_search_only_sends_the_question_and_shows_its_hits_without_an_answer(page, server):
    base, _ = server
    question = "How long until my files move to the archive tier?"
    page.fill('[data-testid="question"]', question)
    page.click('[data-testid="search-button"]')
    page.wait_for_selector('[data-testid="hit"]')
    expected = httpx.post(base + "/api/search", json={"question": question, "k": 20}).json()
    hits = page.locator('[data-testid="hit"]')
    shown = [hits.nth(i).get_attribute("data-chunk-id") for i in range(hits.count())]
    assert shown == [hit["chunk_id"] for hit in expected["hits"]] and shown
    assert "no answer generated" in page.inner_text('[data-testid="answer"]')
    assert page.locator('[data-testid="citation"]').count() == 0


def wait_for_document(page) -> None:
    """The viewer opens at once and fills in when the document arrives; wait for its highlighted chunk."""
    page.locator('[data-testid="doc-viewer"]').wait_for(state="visible")
    page.locator('[data-testid="doc-text"] mark.chunk').first.wait_for(state="visible")


def test_a_citation_opens_the_document_with_the_chunk_highlighted(page):
    ask_golden(page, "fx-01")
    page.locator('[data-testid="citation"]').first.click()
    viewer = page.locator('[data-testid="doc-viewer"]')
    wait_for_document(page)
    assert page.inner_text('[data-testid="doc-title"]') == "Lifecycle rules"
    highlight = page.locator('[data-testid="doc-text"] mark.chunk')
    highlight.first.wait_for(state="visible")
    assert "Objects transition to cold-vault" in "".join(highlight.all_inner_texts())
    assert page.locator('[data-testid="doc-text"] mark.evidence-quote').count() >= 1
    page.click('[data-testid="doc-close"]')
    viewer.wait_for(state="hidden")


def test_a_hit_opens_its_document_and_superseded_and_injection_docs_are_flagged(page):
    ask_golden(page, "fx-04")
    old = page.locator('[data-testid="hit"][data-chunk-id="policies/refunds-2024.txt#0"]')
    assert "superseded" in old.inner_text()
    tip = page.locator('[data-testid="hit"][data-chunk-id="community/tip.md#0"]')
    assert tip.locator('[data-testid="injection-badge"]').count() == 1
    old.click()
    wait_for_document(page)
    assert "superseded" in page.inner_text('[data-testid="doc-meta"]')
    assert "14 days" in page.inner_text('[data-testid="doc-text"] mark.chunk')


def test_runs_view_charts_filters_and_compares(page, server):
    base, (narrow, wide) = server
    page.click('[data-testid="tab-runs"]')
    chart = page.locator('[data-testid="runs-chart"] svg')
    chart.wait_for()
    assert chart.locator("polyline").count() == 4
    assert chart.locator('[data-testid="chart-point"]').count() == 8
    rows = page.locator('[data-testid="question-row"]')
    rows.first.wait_for()
    assert rows.count() == 6
    assert page.input_value('[data-testid="run-select"]') == wide

    label = rows.first.get_attribute("data-failure")
    page.select_option('[data-testid="failure-filter"]', label)
    filtered = [rows.nth(i).get_attribute("data-failure") for i in range(rows.count())]
    assert filtered and set(filtered) == {label}
    page.select_option('[data-testid="failure-filter"]', "")
    assert rows.count() == 6

    rows.first.click()
    detail = page.inner_text('[data-testid="question-detail"]')
    assert "EXPECTED" in detail.upper() and "RETRIEVED" in detail.upper()

    page.select_option('[data-testid="compare-select"]', narrow)
    page.click('[data-testid="compare-button"]')
    page.locator('[data-testid="flips"]').wait_for(state="attached")
    expected = httpx.get(base + "/api/compare", params={"a": narrow, "b": wide}).json()["flips"]
    assert len(expected) > 0, "the two fixture runs should differ on at least one question"
    flips = page.locator('[data-testid="flip"]')
    assert sorted(flips.nth(i).get_attribute("data-id") for i in range(flips.count())) == sorted(f["id"] for f in expected)


# --- a streamed answer, and HTML that must stay text -----------------------------------------------

EVIL_DOC = """---
title: Widget alignment <script>window.__pwned = "title"</script>
type: guide
product: platform
updated: 2026-01-01
status: current
---
# Widget alignment

Sprocket widgets align at 42 rpm. <img src=x onerror="window.__pwned = 'document'"> Realign
<script>window.__pwned = "document script"</script> every quarter.
"""
PIECES = ("Sprocket widgets align at **42 rpm** [1]. ",
          "The model wrote <img src=x onerror=\"window.__pwned = 'answer'\"> and <script>window.__pwned = 'script'</script>. ",
          "\n\n- checked `<b>twice</b>`\n- done [9]")


class GatedGenerator:
    """A model stand-in: streams PIECES, but waits for `gate` before the last one, so the half-written answer
    can be looked at. Cites the first source."""

    gate = threading.Event()

    def generate(self, question: str, context: Sequence[Chunk]) -> Generation:
        return Generation("".join(PIECES).strip(), (context[0].chunk_id,), usage=Usage(100, 20, 0.00012, calls=1))

    def stream(self, question: str, context: Sequence[Chunk], on_text) -> Generation:
        for piece in PIECES[:-1]:
            on_text(piece)
        self.gate.wait(TIMEOUT_MS / 1000)
        on_text(PIECES[-1])
        return self.generate(question, context)


def build_gated_pipeline(config, documents):
    """The starter pipeline with GatedGenerator in place of its generator."""
    from exercise.pipeline import build_pipeline

    pipeline = build_pipeline(config, documents)
    pipeline.generator = GatedGenerator()
    return pipeline


@pytest.fixture(scope="module")
def streaming_server(tmp_path_factory):
    """Base URL of the service over the gated pipeline and the fixture corpus plus EVIL_DOC."""
    require_chromium()
    corpus = tmp_path_factory.mktemp("evil") / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "guides" / "widgets.md").write_text(EVIL_DOC)
    module = types.ModuleType("gated_pipeline")
    module.build_pipeline = build_gated_pipeline  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "gated_pipeline", module)
        patch.setenv("RAGKATA_RUNS_DIR", str(corpus.parent / "runs"))
        app = create_app(pipeline="gated_pipeline", corpus=corpus, golden=GOLDEN, config=Config(retriever="bm25"))
        with serving(app) as base:
            yield base


@pytest.fixture
def streaming_page(browser, streaming_server):
    with opened_page(browser, streaming_server + "/") as opened:
        yield opened
        GatedGenerator.gate.set()


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def assert_never_ran(page) -> None:
    assert page.evaluate("window.__pwned") is None, "HTML from the model or a document was executed"


def test_the_answer_appears_as_it_streams_and_html_in_it_stays_text(streaming_page):
    page = streaming_page
    GatedGenerator.gate.clear()
    page.fill('[data-testid="question"]', "How fast do sprocket widgets align?")
    page.click('[data-testid="ask-button"]')
    answer = page.locator('[data-testid="answer"]')
    page.wait_for_function("document.querySelector('[data-testid=answer]').innerText.includes('42 rpm')")
    assert "streaming" in answer.get_attribute("class") and "generating" in page.inner_text('[data-testid="ask-status"]')
    assert "done" not in answer.inner_text()  # the last piece is still held back
    assert page.locator('[data-testid="hit"]').first.get_attribute("data-chunk-id") == "guides/widgets.md#0"
    screenshot(page, "playground-streaming")

    GatedGenerator.gate.set()
    page.wait_for_selector('[data-testid="citation"]')
    assert "streaming" not in answer.get_attribute("class")
    text = answer.inner_text()
    assert "42 rpm" in answer.locator("strong").first.inner_text()  # Markdown: bold
    assert "<img src=x onerror=" in text and "<script>window.__pwned = 'script'</script>" in text  # shown as text
    assert answer.locator("img, script, b").count() == 0
    assert answer.locator("code").inner_text() == "<b>twice</b>" and answer.locator("li").count() == 2
    markers = answer.locator('[data-testid="marker"]')
    assert markers.count() == 1 and markers.first.inner_text() == "[1]"  # [9] names no source: not a link
    assert answer.locator(".marker.invalid").inner_text() == "[9]"
    assert page.inner_text('[data-testid="usage"]') == "model: 100 prompt + 20 completion tokens · $0.000120"
    assert_never_ran(page)
    screenshot(page, "playground-streamed")

    markers.first.click()  # [1] opens the document it cites, whose HTML stays text too
    wait_for_document(page)
    assert "Widget alignment <script>" in page.inner_text('[data-testid="doc-title"]')
    doc = page.locator('[data-testid="doc-text"]')
    assert '<img src=x onerror="window.__pwned = \'document\'">' in doc.inner_text()
    assert doc.locator("img, script").count() == 0 and page.locator('[data-testid="hits"] img').count() == 0
    assert_never_ran(page)
    screenshot(page, "playground-document")
