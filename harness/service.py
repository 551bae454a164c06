"""The HTTP service behind `ragkata serve`: a JSON API over one pipeline, its corpus, the dev questions
and runs/, plus the playground page (harness/static/). create_app() loads the corpus and builds the
index once; pipeline calls run in the thread pool, so a slow question never blocks /healthz.
POST /api/ask with "stream": true answers in NDJSON lines as the answer is generated (StreamTap).

Left out on purpose: writing anything (runs are read-only here), the holdout set, and letting a request
name a file: documents, runs, golden questions and static assets are looked up by key in dicts built
from what was loaded or listed, never by joining a path from the URL.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from exercise.config import Config
from exercise.contracts import Answer, Chunk, Generation, Hit
from harness.api import (
    ASK_EXAMPLE,
    ERRORS,
    SEARCH_EXAMPLE,
    AskEvent,
    AskRequest,
    AskResponse,
    CompareOut,
    DeltaOut,
    DocOut,
    FlipOut,
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
from harness.compare import flips, metric_deltas
from harness.corpus import load_corpus, read_canaries
from harness.golden import GoldenQuestion, read_golden
from harness.metrics import covers
from harness.records import usage_to_json
from harness.runner import load_pipeline, peak_rss_mb, read_samples, runs_dir
from harness.scoring import summarize

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


# --- runs/ ----------------------------------------------------------------------------------------

def run_folders() -> dict[str, Path]:
    """Run folders listed in runs/ (those with a spec.json), by name, oldest first; holdout runs left out."""
    root = runs_dir()
    if not root.is_dir():
        return {}
    folders = {}
    for path in sorted(root.iterdir()):
        if path.is_symlink() or not (path / "spec.json").is_file():
            continue
        try:
            golden = str(json.loads((path / "spec.json").read_text(encoding="utf-8")).get("golden", ""))
        except (json.JSONDecodeError, OSError, AttributeError):
            continue
        if "holdout" not in golden.lower():
            folders[path.name] = path
    return folders


def latest_name() -> str | None:
    link = runs_dir() / "latest"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def find_run(run_id: str) -> Path:
    """Resolve a run id (or "latest") against the listing of runs/; anything else is a 404."""
    folders = run_folders()
    name = latest_name() if run_id == "latest" else run_id
    if name not in folders:
        raise HTTPException(404, f"unknown run {run_id!r}; GET /api/runs lists the run ids ({len(folders)} in {runs_dir()})")
    return folders[name]


def run_summary(folder: Path, latest: str | None) -> RunSummary:
    """summary.json; for a run still going (or killed), a summary computed from its sample lines."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        samples = read_samples(folder / "samples.jsonl")
        summary = {**summarize(samples).to_json(), "complete": False} if samples else {}
    fields = {k: summary[k] for k in RunSummary.model_fields if k in summary and k not in ("run_id", "latest")}
    return RunSummary(run_id=folder.name, latest=folder.name == latest, **fields)


# --- streaming -----------------------------------------------------------------------------------

class StreamTap:
    """The pipeline's generator, wrapped so that a streaming /api/ask sees the context and the text as they come.

    Outside a streaming request it only forwards generate(). Inside one (a listener set for this thread) it
    reports the chunks handed to the generator, then the text: through the generator's own
    stream(question, context, on_text) when it has one (exercise/llm.py's), else generate()'s text in one piece.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.local = threading.local()

    def __getattr__(self, name: str) -> Any:  # everything but generate() is the wrapped generator's
        if name in ("inner", "local"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generate(self, question: str, context: Sequence[Chunk]) -> Generation:
        listener = getattr(self.local, "listener", None)
        if listener is None:
            return self.inner.generate(question, context)
        listener.put(("context", list(context)))
        stream = getattr(self.inner, "stream", None)
        if callable(stream):
            return stream(question, context, lambda piece: listener.put(("text", piece)))
        generation = self.inner.generate(question, context)
        listener.put(("text", generation.text))
        return generation


def tap_generator(pipeline: Any) -> StreamTap | None:
    """Wrap pipeline.generator in a StreamTap; None when the pipeline has no generator it lets us replace
    (a streamed answer then arrives in one piece, once the pipeline has finished)."""
    generator = getattr(pipeline, "generator", None)
    if generator is None or not callable(getattr(generator, "generate", None)):
        return None
    tap = StreamTap(generator)
    try:
        pipeline.generator = tap
    except (AttributeError, TypeError):  # a frozen or slotted pipeline
        return None
    return tap


def stream_events(answer: Callable[[], Answer], tap: StreamTap | None, sources: Callable[[Sequence[Chunk]], list[SourceOut]],
                  respond: Callable[[Answer], AskResponse]) -> Iterator[str]:
    """NDJSON lines of AskEvent: "context" once, "delta"s, then "answer"; "error" instead if the pipeline raises.

    The pipeline runs in its own thread and reports through a queue. A pipeline whose generator could not be
    tapped sends its context and its whole text once it has answered.
    """
    events: queue.Queue = queue.Queue()

    def work() -> None:
        if tap is not None:
            tap.local.listener = events
        try:
            events.put(("done", answer()))
        except BaseException as exc:  # noqa: BLE001 - the candidate's code may raise anything; report it
            log.exception("pipeline call failed while streaming")
            events.put(("error", f"the pipeline raised {type(exc).__name__}: {exc}"))
        finally:
            if tap is not None:
                tap.local.listener = None

    def line(**event: Any) -> str:  # the event's own unset fields left out; None inside the answer kept
        fields = AskEvent(**event).model_dump(mode="json")
        return json.dumps({name: value for name, value in fields.items() if value is not None}) + "\n"

    threading.Thread(target=work, name="ask-stream", daemon=True).start()
    sent_context = sent_text = False
    while True:
        kind, payload = events.get()
        if kind == "context" and not sent_context:
            sent_context = True
            yield line(event="context", sources=sources(payload))
        elif kind == "text" and payload:
            sent_text = True
            yield line(event="delta", text=payload)
        elif kind == "error":
            yield line(event="error", detail=payload)
            return
        elif kind == "done":
            try:
                response = respond(payload)
            except Exception as exc:  # an Answer the response cannot be built from
                log.exception("could not build the response")
                yield line(event="error", detail=f"the pipeline's answer could not be read: {type(exc).__name__}: {exc}")
                return
            if not sent_context:
                yield line(event="context", sources=response.sources)
            if not sent_text and response.answer:
                yield line(event="delta", text=response.answer)
            yield line(event="answer", answer=response)
            return


# --- the app --------------------------------------------------------------------------------------

def create_app(pipeline: str = "exercise", corpus: Path | str = "corpus", golden: Path | str | None = "golden_set/dev.jsonl",
               config: Config | None = None, token: str | None = None) -> FastAPI:
    """Load the corpus and dev questions, build the pipeline once, and return the app serving them."""
    config = config or Config()
    golden_by_id = load_dev_golden(golden)
    documents = {d.doc_id: d for d in load_corpus(corpus)}
    canaries = read_canaries(corpus)
    built = load_pipeline(pipeline, config, list(documents.values()))
    tap = tap_generator(built)
    started = time.time()
    app = FastAPI(title="ragkata", version="0.1.0", description="The playground's API over one pipeline. When the "
                  "server was started with --token, every /api request needs 'Authorization: Bearer <token>'.")
    app.state.pipeline = built

    def call_pipeline(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:  # the candidate's code may raise anything; report it and stay up
            log.exception("pipeline call failed")
            raise HTTPException(500, f"the pipeline raised {type(exc).__name__}: {exc}") from None

    def known_golden(golden_id: str) -> GoldenQuestion:
        if golden_id not in golden_by_id:
            raise HTTPException(404, f"unknown golden id {golden_id!r}; GET /api/golden lists the dev questions")
        return golden_by_id[golden_id]

    def hit_out(rank: int, hit: Hit, context: set[str], cited: set[str], question: GoldenQuestion | None) -> HitOut:
        chunk, doc = hit.chunk, documents.get(hit.chunk.doc_id)
        return HitOut(
            rank=rank, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, text=chunk.text, start=chunk.start, end=chunk.end,
            score=hit.score if math.isfinite(hit.score) else None, in_context=chunk.chunk_id in context,
            cited=chunk.chunk_id in cited, doc_title=doc.title if doc else "", doc_status=doc.status if doc else "unknown",
            superseded_by=doc.superseded_by if doc else None, injection=bool(doc and doc.canary) or chunk.doc_id in canaries,
            evidence=[i for i, item in enumerate(question.evidence) if covers(chunk, item)] if question else [])

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token and request.url.path.startswith("/api"):
            sent = request.headers.get("authorization", "")
            if not secrets.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"detail": "missing or wrong token: send the header 'Authorization: Bearer <token>' "
                                     "with the token given to ragkata serve --token"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def explain_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        example = SEARCH_EXAMPLE if request.url.path.endswith("/search") else ASK_EXAMPLE
        return JSONResponse({"detail": "; ".join(explain(e, example) for e in exc.errors())}, status_code=422)

    def source_out(n: int, chunk: Chunk) -> SourceOut:
        doc = documents.get(chunk.doc_id)
        return SourceOut(n=n, chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, text=chunk.text, start=chunk.start,
                         end=chunk.end, doc_title=doc.title if doc else "", doc_status=doc.status if doc else "unknown",
                         superseded_by=doc.superseded_by if doc else None,
                         injection=bool(doc and doc.canary) or chunk.doc_id in canaries)

    def sources_of(chunks: Sequence[Chunk]) -> list[SourceOut]:
        return [source_out(n, chunk) for n, chunk in enumerate(chunks, start=1)]

    def ask_response(body: AskRequest, answer: Answer, question: GoldenQuestion | None) -> AskResponse:
        context, cited = set(answer.context), set(answer.citations)
        hits = answer.retrieved[: body.k] if body.k else answer.retrieved
        by_id = {hit.chunk.chunk_id: hit.chunk for hit in answer.retrieved}
        chunks = [by_id.get(cid) or Chunk(cid, cid.partition("#")[0], "", 0, 0) for cid in answer.context]
        return AskResponse(
            question=body.question, answer=answer.text, citations=list(answer.citations), abstained=answer.abstained,
            retrieved=[hit_out(r, h, context, cited, question) for r, h in enumerate(hits, start=1)],
            context=list(answer.context), sources=sources_of(chunks),
            latency_ms={k: float(v) for k, v in answer.latency_ms.items()},
            golden=GoldenOut.of(question) if question else None,
            usage=UsageOut(**usage_to_json(getattr(answer, "usage", None))))

    @app.post("/api/ask", response_model=AskResponse, responses={**ERRORS, 200: {"content": {"application/x-ndjson": {
        "schema": {"type": "string", "description": "with stream: one AskEvent (JSON) per line"}}}}}, tags=["pipeline"])
    def ask(body: AskRequest):
        """Answer one question: the Answer record, each hit with its document's status and evidence marks.

        With "stream": true the reply is NDJSON, one AskEvent per line as the answer is generated: "context"
        (the chunks handed to the generator), "delta"s of text, then "answer" (this response); or "error".
        """
        if body.golden_id is not None:
            question = known_golden(body.golden_id)
        else:
            question = next((q for q in golden_by_id.values() if q.question.strip() == body.question.strip()), None)
        if body.stream:
            return StreamingResponse(stream_events(lambda: built.answer(body.question), tap, sources_of,
                                                   lambda answer: ask_response(body, answer, question)),
                                     media_type="application/x-ndjson", headers={"Cache-Control": "no-cache"})
        return ask_response(body, call_pipeline(lambda: built.answer(body.question)), question)

    @app.post("/api/search", response_model=SearchResponse, responses=ERRORS, tags=["pipeline"])
    def search(body: SearchRequest) -> SearchResponse:
        """Retrieval only: the pipeline's k best hits for the question."""
        begun = time.perf_counter()
        hits = call_pipeline(lambda: built.search(body.question, body.k))
        took = (time.perf_counter() - begun) * 1000
        return SearchResponse(question=body.question, k=body.k, latency_ms={"search": took},
                              hits=[hit_out(r, h, set(), set(), None) for r, h in enumerate(hits, start=1)])

    @app.get("/api/docs/{doc_id:path}", response_model=DocOut, responses=ERRORS, tags=["corpus"])
    async def doc(doc_id: str) -> DocOut:
        """One corpus document with its metadata. Only ids of loaded documents resolve."""
        if doc_id not in documents:
            raise HTTPException(404, f"unknown doc id {doc_id!r}; doc ids are paths under the corpus folder, "
                                     "as hits show them, e.g. 'storage/guides/lifecycle.md'")
        return DocOut.of(documents[doc_id], doc_id in canaries)

    @app.get("/api/golden", response_model=list[GoldenOut], responses=ERRORS, tags=["golden"])
    async def golden_list() -> list[GoldenOut]:
        """The dev questions with their reference answers and evidence (never the holdout)."""
        return [GoldenOut.of(q) for q in golden_by_id.values()]

    @app.get("/api/golden/{golden_id}", response_model=GoldenOut, responses=ERRORS, tags=["golden"])
    async def golden_one(golden_id: str) -> GoldenOut:
        """One dev question by id."""
        return GoldenOut.of(known_golden(golden_id))

    @app.get("/api/runs", response_model=list[RunSummary], responses=ERRORS, tags=["runs"])
    def runs_list() -> list[RunSummary]:
        """Every run in runs/, oldest first (run ids sort by time), with its summary."""
        latest = latest_name()
        return [run_summary(folder, latest) for folder in run_folders().values()]

    @app.get("/api/runs/{run_id}", response_model=RunOut, responses=ERRORS, tags=["runs"])
    def run_detail(run_id: str) -> RunOut:
        """One run: its summary and every sample line, hits marked where they cover the dev question's evidence."""
        folder = find_run(run_id)
        lines = []
        for sample in read_samples(folder / "samples.jsonl"):
            question, line = golden_by_id.get(sample.id), sample.to_json()
            for hit, shown in zip(sample.retrieved, line["retrieved"]):
                shown["evidence"] = [i for i, e in enumerate(question.evidence) if covers(hit.chunk, e)] if question else []
            line["expected"] = GoldenOut.of(question).model_dump() if question else None
            lines.append(line)
        return RunOut(summary=run_summary(folder, latest_name()), samples=lines)

    @app.get("/api/compare", response_model=CompareOut, responses=ERRORS, tags=["runs"])
    def compare(a: str, b: str) -> CompareOut:
        """Run b against run a: per-metric deltas with 95% paired bootstrap intervals, and the flipped questions."""
        samples_a, samples_b = (read_samples(find_run(r) / "samples.jsonl") for r in (a, b))
        questions = {s.id: s.question for s in samples_a}
        return CompareOut(a=a, b=b, deltas=[DeltaOut(**d.__dict__) for d in metric_deltas(samples_a, samples_b)],
                          flips=[FlipOut(id=f.id, question=questions.get(f.id, ""), before=f.before, after=f.after)
                                 for f in flips(samples_a, samples_b)])

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness, what is loaded, and the process's peak memory. Needs no token."""
        return Health(status="ok", pipeline=pipeline, docs=len(documents), golden=len(golden_by_id),
                      chunks=getattr(getattr(built, "index_stats", None), "chunks", None), peak_rss_mb=round(peak_rss_mb(), 1),
                      uptime_s=round(time.time() - started, 1), token_required=bool(token), config=config.to_dict())

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"unknown asset {name!r}; the page uses app.js and style.css")
        path, media_type = ASSETS[name]
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return app
