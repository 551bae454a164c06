"""Shared fixtures and the one deterministic fake pipeline the harness tests run.

The fake is registered as the importable module `fake_pipeline`, so tests drive it exactly as users
drive a real one: `--pipeline fake_pipeline`. Questions containing RAISE make it raise; HANG makes it
sleep past any sensible per-question limit;
INTERRUPT acts like Ctrl-C. The llama_server fixture runs a real local model server for the real-model
tests (skipped without `make llm`, failed under CI).
"""

from __future__ import annotations

import os
import re
import sys
import time
import types
from pathlib import Path
from typing import Iterator, Sequence

import pytest

from exercise.config import Config
from exercise.contracts import Answer, Chunk, Document, Hit, IndexStats

FIXTURES = Path(__file__).parent / "fixtures"
_WORD = re.compile(r"[a-z0-9-]+")


class FakePipeline:
    """Paragraph chunks, word-overlap ranking, first sentence of the best chunk as the answer."""

    def __init__(self, config: Config, documents: Sequence[Document]):
        self.config = config
        self.chunks = [
            Chunk(f"{doc.doc_id}#{n}", doc.doc_id, part, doc.text.index(part), doc.text.index(part) + len(part))
            for doc in documents
            for n, part in enumerate(p for p in doc.text.split("\n\n") if p.strip())
        ]
        self.index_stats = IndexStats(len(self.chunks), 0.001, False)

    def search(self, query: str, k: int) -> list[Hit]:
        words = set(_WORD.findall(query.lower()))
        scored = [(len(words & set(_WORD.findall(c.text.lower()))), -i, c) for i, c in enumerate(self.chunks)]
        scored.sort(reverse=True, key=lambda t: (t[0], t[1]))
        return [Hit(c, float(s)) for s, _, c in scored[:k]]

    def answer(self, question: str) -> Answer:
        if "RAISE" in question:
            raise RuntimeError("the fake pipeline was asked to fail")
        if "INTERRUPT" in question:
            raise KeyboardInterrupt
        if "HANG" in question:
            time.sleep(5)
        hits = self.search(question, self.config.k_retrieve)
        context = hits[: self.config.k_context]
        best = context[0].chunk
        return Answer(
            question=question,
            text=best.text.split(". ")[0],
            citations=(best.chunk_id,),
            abstained=hits[0].score == 0,
            retrieved=tuple(hits),
            context=tuple(h.chunk.chunk_id for h in context),
            latency_ms={"retrieve": 1.0, "generate": 0.5, "total": 1.5},
        )


def build_pipeline(config: Config, documents: Sequence[Document]) -> FakePipeline:
    return FakePipeline(config, documents)


@pytest.fixture
def fake_pipeline_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make `fake_pipeline` importable and return its name, for `--pipeline fake_pipeline`."""
    module = types.ModuleType("fake_pipeline")
    module.build_pipeline = build_pipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_pipeline", module)
    return "fake_pipeline"


@pytest.fixture
def fixture_corpus() -> Path:
    return FIXTURES / "corpus"


@pytest.fixture
def fixture_golden() -> Path:
    return FIXTURES / "golden.jsonl"


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs/ folder for this test, set through RAGKATA_RUNS_DIR."""
    directory = tmp_path / "runs"
    monkeypatch.setenv("RAGKATA_RUNS_DIR", str(directory))
    return directory


def require_local_model() -> None:
    """Skip when llama.cpp's server or the SmolLM2 GGUF is missing; under CI (env CI set), fail instead."""
    from harness.llm_server import unavailable

    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the real-model tests")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp OpenAI-compatible server (SmolLM2-135M) on a free loopback port, for the whole
    session; yields its /v1 URL. harness/llm_server.py starts it, as `ragkata llm serve` does."""
    from harness.llm_server import free_port, start_server

    require_local_model()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with start_server(free_port(), log_path=log) as server:
        yield server.base_url
