"""Shared fixtures and the one deterministic fake pipeline the harness tests run.

The fake is registered as the importable module `fake_pipeline`, so tests drive it exactly as users
drive a real one: `--pipeline fake_pipeline`. Questions containing RAISE make it raise; HANG makes it
sleep past any sensible per-question limit;
INTERRUPT acts like Ctrl-C. ScriptedLLM (the scripted_llm fixture) is the one fake OpenAI-compatible chat
endpoint: scripted replies, errors, delays and streaming. The llama_server fixture runs a real local model
server for the real-model tests (skipped without `make llm`, failed under CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


@dataclass
class ScriptedLLM:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that answers as scripted, recording each request.

    Each request takes the next of `steps`, (status, reply text or error message, seconds to wait first), and
    once they run out, (200, the pieces joined, 0). A request with "stream": true gets Server-Sent Events, one chunk per
    piece of the reply (a scripted text in one piece), then the usage when stream_options.include_usage asks.
    An error echoes the Authorization header, as careless servers do. Start and stop it with `with`; its
    fields may be changed between requests.
    """

    pieces: Sequence[str] = ("Port 9100 [1].",)  # the reply, streamed one piece per chunk
    usage: tuple[int, int] | None = (120, 8)  # prompt and completion tokens; None: no reply reports them
    steps: list[tuple[int, str, float]] = field(default_factory=list)  # taken one per request, first to last
    requests: list[dict] = field(default_factory=list)  # {"body": the JSON sent, "authorization": its header}
    url: str = ""  # the base URL, http://127.0.0.1:<port>/v1, once started

    def __enter__(self) -> ScriptedLLM:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _next(self, body: dict, authorization: str) -> tuple[int, list[str], float]:
        with self._lock:
            self.requests.append({"body": body, "authorization": authorization})
            if self.steps:
                status, text, delay = self.steps.pop(0)
                return status, [text], delay
            return 200, list(self.pieces), 0.0

    def _usage(self) -> dict:
        prompt, completion = self.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, model: str, text: str) -> dict:
        message = {"role": "assistant", "content": text}
        reply = {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        return reply | ({"usage": self._usage()} if self.usage else {})

    def _chunks(self, body: dict, pieces: list[str]) -> list[dict]:
        head = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        chunks = [{**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                  for piece in pieces]
        if self.usage and body.get("stream_options", {}).get("include_usage"):
            chunks.append({**head, "choices": [], "usage": self._usage()})
        return chunks

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                authorization = self.headers.get("Authorization", "")
                status, pieces, delay = llm._next(body, authorization)
                time.sleep(delay)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client may have timed out
                    if status != 200:
                        self.send_json(status, {"error": {"message": f"{pieces[0]} (got {authorization})"}})
                    elif body.get("stream"):
                        self.send_events(llm._chunks(body, pieces))
                    else:
                        self.send_json(200, llm._completion(body["model"], "".join(pieces)))

            def send_json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def send_events(self, chunks: list[dict]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A started ScriptedLLM with the default reply, stopped after the test."""
    with ScriptedLLM() as llm:
        yield llm


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
