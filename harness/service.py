"""The HTTP service behind `ragkata serve`: a JSON API over one pipeline, its corpus, the dev questions and runs/, and
the playground page. Left out on purpose: writing anything, the holdout set, and any file path taken from a URL."""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from exercise.config import Config
from exercise.contracts import Answer, Chunk, Document, Hit
from harness import run_views
from harness.api import (
    ASK_EXAMPLE,
    ERRORS,
    SEARCH_EXAMPLE,
    AskRequest,
    AskResponse,
    CompareOut,
    DocOut,
    GoldenOut,
    Health,
    HitOut,
    RunOut,
    RunSummary,
    SearchRequest,
    SearchResponse,
    SourceOut,
    UsageOut,
    explain,
)
from harness.batching import BatchingCache, BatchingEncoder, install_lookup_batching, install_query_batching
from harness.corpus import load_corpus, read_canaries
from harness.golden import GoldenQuestion, read_golden
from harness.metrics import covers
from harness.records import usage_to_json
from harness.runner import load_pipeline, peak_rss_mb
from harness.scoring import SourceCorpus
from harness.streaming import StreamTap, stream_events, tap_generator

log = logging.getLogger("ragkata.service")
STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": (STATIC / "app.js", "text/javascript"), "style.css": (STATIC / "style.css", "text/css")}
T = TypeVar("T")


# --- start-up checks ------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: addresses only this machine can reach."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token: anyone on the network could query the pipeline."""
    if not is_loopback(host) and not token:
        raise ValueError(f"--host {host} is reachable from other machines, so the API needs a token: add "
                         "--token <secret> (or set RAGKATA_TOKEN); clients then send 'Authorization: Bearer "
                         "<secret>'. Or keep the default --host 127.0.0.1")


def load_dev_golden(path: Path | str | None) -> dict[str, GoldenQuestion]:
    """The dev questions by id; None gives none. A holdout file is refused: the service never shows it."""
    if path is None:
        return {}
    if "holdout" in str(path).lower():
        raise ValueError(f"{path}: the service never serves the holdout set; pass --golden golden_set/dev.jsonl")
    return {q.id: q for q in read_golden(path)}


# --- what is served -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Loaded:
    """What create_app() loads once, and the records it builds from the pipeline's output. Documents and dev
    questions are looked up by key in these dicts, never by joining a path from the URL."""

    name: str  # the pipeline's module, as --pipeline named it
    config: Config
    pipeline: Any  # its generator replaced by `tap` when it could be
    tap: StreamTap | None
    documents: dict[str, Document]  # by doc id
    canaries: dict[str, str]  # doc id -> canary, from corpus/canaries.json
    golden: dict[str, GoldenQuestion]  # the dev questions by id
    started: float  # time.time() when loaded
    batchers: tuple[BatchingEncoder, ...] = ()  # the pipeline's encoders, wrapped to encode concurrent queries together
    lookups: tuple[BatchingCache, ...] = ()  # its dense retrievers' vector caches, wrapped to look up queries together

    @cached_property
    def sources(self) -> SourceCorpus:
        """The documents as scoring reads them: a hit covers evidence by its span in the corpus, as in a run."""
        return SourceCorpus({doc_id: doc.text for doc_id, doc in self.documents.items()}, self.canaries)

    def known_golden(self, golden_id: str) -> GoldenQuestion:
        if golden_id not in self.golden:
            raise HTTPException(404, f"unknown golden id {golden_id!r}; GET /api/golden lists the dev questions")
        return self.golden[golden_id]

    def question_for(self, body: AskRequest) -> GoldenQuestion | None:
        """The dev question asked: body.golden_id's (unknown: 404), else one with the same text, else None."""
        if body.golden_id is not None:
            return self.known_golden(body.golden_id)
        return next((q for q in self.golden.values() if q.question.strip() == body.question.strip()), None)

    def doc_fields(self, doc_id: str) -> dict[str, Any]:
        """What a hit or a source shows of its document; status "unknown" for a chunk of no loaded document."""
        doc = self.documents.get(doc_id)
        return {"doc_title": doc.title if doc else "", "doc_status": doc.status if doc else "unknown",
                "superseded_by": doc.superseded_by if doc else None,
                "injection": bool(doc and doc.canary) or doc_id in self.canaries}

    def hit_out(self, rank: int, hit: Hit, context: set[str], cited: set[str], question: GoldenQuestion | None) -> HitOut:
        chunk = hit.chunk
        return HitOut(
            rank=rank, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, text=chunk.text, start=chunk.start, end=chunk.end,
            score=hit.score if math.isfinite(hit.score) else None, in_context=chunk.chunk_id in context,
            cited=chunk.chunk_id in cited, **self.doc_fields(chunk.doc_id),
            evidence=[i for i, item in enumerate(question.evidence) if covers(self.sources.sourced(chunk), item)]
            if question else [])

    def sources_of(self, chunks: Sequence[Chunk]) -> list[SourceOut]:
        return [SourceOut(n=n, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, text=chunk.text, start=chunk.start,
                          end=chunk.end, **self.doc_fields(chunk.doc_id)) for n, chunk in enumerate(chunks, start=1)]

    def ask_response(self, body: AskRequest, answer: Answer, question: GoldenQuestion | None) -> AskResponse:
        context, cited = set(answer.context), set(answer.citations)
        hits = answer.retrieved[: body.k] if body.k else answer.retrieved
        by_id = {hit.chunk.chunk_id: hit.chunk for hit in answer.retrieved}
        chunks = [by_id.get(cid) or Chunk(cid, cid.partition("#")[0], "", 0, 0) for cid in answer.context]
        return AskResponse(
            question=body.question, answer=answer.text, citations=list(answer.citations), abstained=answer.abstained,
            retrieved=[self.hit_out(r, h, context, cited, question) for r, h in enumerate(hits, start=1)],
            context=list(answer.context), sources=self.sources_of(chunks),
            latency_ms={k: float(v) for k, v in answer.latency_ms.items()},
            golden=GoldenOut.of(question) if question else None,
            usage=UsageOut(**usage_to_json(getattr(answer, "usage", None))))


def call_pipeline(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception as exc:  # the candidate's code may raise anything; report it and stay up
        log.exception("pipeline call failed")
        raise HTTPException(500, f"the pipeline raised {type(exc).__name__}: {exc}") from None


# --- the app --------------------------------------------------------------------------------------

def create_app(pipeline: str = "exercise", corpus: Path | str = "corpus", golden: Path | str | None = "golden_set/dev.jsonl",
               config: Config | None = None, token: str | None = None, batch_queries: bool = True) -> FastAPI:
    """Load the corpus and dev questions, build the pipeline once, and return the app serving them.

    With batch_queries, the encoders inside the pipeline (e.g. its retriever's) are wrapped so that concurrent
    requests' query encodes run as one batch, and a dense retriever's vector cache so that their cache lookups
    (read, encode the misses, write) run as one (harness/batching.py); the pipeline's code is unchanged.
    uvicorn's access log is turned off at start-up: a log line per request costs more CPU than a cached search."""
    config = config or Config()
    golden_by_id = load_dev_golden(golden)
    documents = {d.doc_id: d for d in load_corpus(corpus)}
    canaries = read_canaries(corpus)
    built = load_pipeline(pipeline, config, list(documents.values()))
    batchers = tuple(install_query_batching(built)) if batch_queries else ()
    lookups = tuple(install_lookup_batching(built)) if batch_queries else ()
    loaded = Loaded(name=pipeline, config=config, pipeline=built, tap=tap_generator(built), documents=documents,
                    canaries=canaries, golden=golden_by_id, started=time.time(), batchers=batchers, lookups=lookups)
    app = FastAPI(title="ragkata", version="0.1.0", description="The playground's API over one pipeline. When the "
                  "server was started with --token, every /api request needs 'Authorization: Bearer <token>'.",
                  lifespan=quiet_access_log)
    app.state.pipeline = built
    add_guards(app, token)
    add_pipeline_routes(app, loaded)
    add_corpus_routes(app, loaded)
    add_run_routes(app, loaded)
    add_service_routes(app, loaded, token, batch_queries)
    return app


@asynccontextmanager
async def quiet_access_log(app: FastAPI) -> AsyncIterator[None]:
    """Drop uvicorn's per-request access log (at start-up, after uvicorn has configured logging): with no handler,
    uvicorn skips the line altogether. Errors are still logged by uvicorn.error."""
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    yield


def add_guards(app: FastAPI, token: str | None) -> None:
    """With a token, every /api request must send it (401 otherwise); a 422 says what to send instead."""
    if token:
        app.add_middleware(TokenGuard, token=token)

    @app.exception_handler(RequestValidationError)
    async def explain_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        example = SEARCH_EXAMPLE if request.url.path.endswith("/search") else ASK_EXAMPLE
        return JSONResponse({"detail": "; ".join(explain(e, example) for e in exc.errors())}, status_code=422)


class TokenGuard:
    """ASGI middleware: an /api request without 'Authorization: Bearer <token>' gets a 401. A plain ASGI
    callable, not @app.middleware("http"), which costs a task and a body stream per request."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api"):
            sent = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
            if not secrets.compare_digest(sent, self.expected):
                response = JSONResponse({"detail": "missing or wrong token: send the header 'Authorization: Bearer "
                                         "<token>' with the token given to ragkata serve --token"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def add_pipeline_routes(app: FastAPI, loaded: Loaded) -> None:
    """POST /api/ask and /api/search. The pipeline runs in the thread pool (ask is a plain def; search hands its
    call there itself): a slow question never blocks /healthz."""
    built = loaded.pipeline

    @app.post("/api/ask", response_model=AskResponse, responses={**ERRORS, 200: {"content": {"application/x-ndjson": {
        "schema": {"type": "string", "description": "with stream: one AskEvent (JSON) per line"}}}}}, tags=["pipeline"])
    def ask(body: AskRequest):
        """Answer one question: the Answer record, each hit with its document's status and evidence marks.

        With "stream": true the reply is NDJSON, one AskEvent per line as the answer is generated: "context"
        (the chunks handed to the generator), "delta"s of text, then "answer" (this response); or "error".
        """
        question = loaded.question_for(body)
        if body.stream:
            return StreamingResponse(stream_events(lambda: built.answer(body.question), loaded.tap, loaded.sources_of,
                                                   lambda answer: loaded.ask_response(body, answer, question)),
                                     media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})
        return loaded.ask_response(body, call_pipeline(lambda: built.answer(body.question)), question)

    @app.post("/api/search", response_model=SearchResponse, responses=ERRORS, tags=["pipeline"])
    async def search(body: SearchRequest) -> SearchResponse:
        """Retrieval only: the pipeline's k best hits for the question."""
        # The search runs in the thread pool (a slow one never blocks /healthz); the response is built and
        # checked here, on the event loop, which saves a second trip through the pool per request.
        begun = time.perf_counter()
        hits = await run_in_threadpool(call_pipeline, lambda: built.search(body.question, body.k))
        took = (time.perf_counter() - begun) * 1000
        return SearchResponse(question=body.question, k=body.k, latency_ms={"search": took},
                              hits=[loaded.hit_out(r, h, set(), set(), None) for r, h in enumerate(hits, start=1)])


def add_corpus_routes(app: FastAPI, loaded: Loaded) -> None:
    """GET /api/docs/{doc_id} and the dev questions, /api/golden and /api/golden/{golden_id}."""

    @app.get("/api/docs/{doc_id:path}", response_model=DocOut, responses=ERRORS, tags=["corpus"])
    async def doc(doc_id: str) -> DocOut:
        """One corpus document with its metadata. Only ids of loaded documents resolve."""
        if doc_id not in loaded.documents:
            raise HTTPException(404, f"unknown doc id {doc_id!r}; doc ids are paths under the corpus folder, "
                                     "as hits show them, e.g. 'storage/guides/lifecycle.md'")
        return DocOut.of(loaded.documents[doc_id], doc_id in loaded.canaries)

    @app.get("/api/golden", response_model=list[GoldenOut], responses=ERRORS, tags=["golden"])
    async def golden_list() -> list[GoldenOut]:
        """The dev questions with their reference answers and evidence (never the holdout)."""
        return [GoldenOut.of(q) for q in loaded.golden.values()]

    @app.get("/api/golden/{golden_id}", response_model=GoldenOut, responses=ERRORS, tags=["golden"])
    async def golden_one(golden_id: str) -> GoldenOut:
        """One dev question by id."""
        return GoldenOut.of(loaded.known_golden(golden_id))


def add_run_routes(app: FastAPI, loaded: Loaded) -> None:
    """GET /api/runs, /api/runs/{run_id} and /api/compare, read from runs/ by harness/run_views.py."""

    @app.get("/api/runs", response_model=list[RunSummary], responses=ERRORS, tags=["runs"])
    def runs_list() -> list[RunSummary]:
        """Every run in runs/, oldest first (run ids sort by time), with its summary."""
        return run_views.run_summaries()

    @app.get("/api/runs/{run_id}", response_model=RunOut, responses=ERRORS, tags=["runs"])
    def run_detail(run_id: str) -> RunOut:
        """One run: its summary and every sample line, hits marked where they cover the dev question's evidence."""
        return run_views.run_out(run_id, loaded.golden, loaded.sources)

    @app.get("/api/compare", response_model=CompareOut, responses=ERRORS, tags=["runs"])
    def compare(a: str, b: str) -> CompareOut:
        """Run b against run a: per-metric deltas with 95% paired bootstrap intervals, and the flipped questions."""
        return run_views.compare_out(a, b)


def add_service_routes(app: FastAPI, loaded: Loaded, token: str | None, batch_queries: bool = True) -> None:
    """GET /healthz (no token needed), the playground page and its two static assets."""

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness, what is loaded, and the process's peak memory. Needs no token."""
        return Health(status="ok", pipeline=loaded.name, docs=len(loaded.documents), golden=len(loaded.golden),
                      chunks=getattr(getattr(loaded.pipeline, "index_stats", None), "chunks", None),
                      peak_rss_mb=round(peak_rss_mb(), 1), uptime_s=round(time.time() - loaded.started, 1),
                      token_required=bool(token), config=loaded.config.to_dict(),
                      cpu_seconds=round(time.process_time(), 3),
                      query_batching=[b.stats() for b in loaded.batchers] if batch_queries else None,
                      query_lookups=[c.stats() for c in loaded.lookups] if batch_queries else None)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"unknown asset {name!r}; the page uses app.js and style.css")
        path, media_type = ASSETS[name]
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})
