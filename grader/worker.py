"""The grader's worker process: load the corpus, build one pipeline, answer questions read from stdin.

Protocol (one JSON object per line): the parent writes {"key", "question"}; the worker writes
{"event": "ready"|"fatal"|"answer", ...} on a private copy of stdout. Fd 1 itself is pointed at
stderr, so a pipeline that prints cannot corrupt the channel.
Left out on purpose: limits (the parent enforces time and memory) and scoring (the parent scores, so
nothing the pipeline does can change a metric).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import resource
import sys
import time
import traceback
from typing import Any, TextIO

TOP_K_SENT = 20  # the harness records and scores the top 20 hits; sending more only costs time


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def where(exc: BaseException) -> str:
    """The last frames of the traceback, for the scorecard's error lines."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])[-1500:]


def answer_record(answer: Any) -> dict:
    """The parts of an Answer the harness scores, as plain JSON types (duck-typed: any record with
    Answer's fields works, whichever class defined it)."""
    hits = list(answer.retrieved)[:TOP_K_SENT]
    return {
        "text": str(answer.text),
        "citations": [str(c) for c in answer.citations],
        "abstained": bool(answer.abstained),
        "retrieved": [{"chunk_id": str(h.chunk.chunk_id), "doc_id": str(h.chunk.doc_id), "text": str(h.chunk.text),
                       "start": int(h.chunk.start), "end": int(h.chunk.end), "score": float(h.score)} for h in hits],
        "context": [str(c) for c in answer.context],
        "latency_ms": {str(k): float(v) for k, v in dict(answer.latency_ms or {}).items()},
    }


def use_candidate_exercise(root: str) -> None:
    """Forget the interviewer's `exercise` package and import the one in `root` from now on."""
    for name in [n for n in sys.modules if n == "exercise" or n.startswith("exercise.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    importlib.invalidate_caches()


def as_candidate_documents(documents: list) -> list:
    """The trusted loader's Documents, rebuilt with the pipeline's own Document class when it has one."""
    try:
        document_class = importlib.import_module("exercise.contracts").Document
        return [document_class(**dataclasses.asdict(d)) for d in documents]
    except Exception:  # no contracts module, or a changed Document: hand over the trusted records as they are
        return documents


def build(args: argparse.Namespace) -> tuple[Any, dict]:
    # The corpus is read by the interviewer's harness before any pipeline code is imported.
    from harness.corpus import load_corpus

    documents = load_corpus(args.corpus)
    if args.candidate_root:
        use_candidate_exercise(args.candidate_root)
        documents = as_candidate_documents(documents)
    # The Config is built as `ragkata eval` builds it: defaults, then RAGKATA_* variables, then --config.
    config = importlib.import_module("exercise.config").Config()
    if hasattr(config, "with_environment"):
        config = config.with_environment()
    overrides = json.loads(args.config)
    if overrides:
        config = config.with_overrides(overrides)
    try:
        target = importlib.import_module(f"{args.pipeline}.pipeline")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{args.pipeline}.pipeline", args.pipeline):
            raise
        target = importlib.import_module(args.pipeline)
    if not hasattr(target, "build_pipeline"):
        raise AttributeError(f"{target.__name__} has no build_pipeline(config, documents)")
    started = time.perf_counter()
    pipeline = target.build_pipeline(config, documents)
    stats = dict(getattr(pipeline, "index_stats", {}) or {})
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    info = {"build_seconds": round(time.perf_counter() - started, 3), "config": config_dict,
            "index_stats": json.loads(json.dumps(stats, default=str))}
    return pipeline, info


def serve(pipeline: Any, requests: TextIO, send) -> None:
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        started = time.perf_counter()
        message: dict = {"event": "answer", "key": request["key"]}
        try:
            message["answer"] = answer_record(pipeline.answer(request["question"]))
        except BaseException as exc:  # noqa: BLE001 - the pipeline may raise anything, even SystemExit
            message["error"] = describe(exc)
            print(f"--- {request['key']}:\n{where(exc)}", file=sys.stderr, flush=True)  # the traceback, for the log
        message["wall_ms"] = (time.perf_counter() - started) * 1000
        message["peak_rss_mb"] = round(peak_rss_mb(), 1)
        send(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.worker")
    parser.add_argument("--pipeline", required=True, help="package with pipeline.build_pipeline")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--candidate-root", default="", help="folder whose exercise/ replaces the interviewer's")
    parser.add_argument("--config", default="[]", help="JSON list of name=value overrides")
    args = parser.parse_args(argv)

    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    os.dup2(2, 1)  # anything the pipeline prints lands in the log, not in the protocol
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # and anything it reads is empty, not the next question
    sys.stdout, sys.stdin = sys.stderr, open(os.devnull, encoding="utf-8")

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        pipeline, info = build(args)
    except BaseException as exc:  # noqa: BLE001 - report any start-up failure, then stop
        send({"event": "fatal", "error": describe(exc), "where": where(exc)})
        return 1
    send({"event": "ready", **info, "peak_rss_mb": round(peak_rss_mb(), 1)})
    serve(pipeline, requests, send)
    return 0


if __name__ == "__main__":
    sys.exit(main())
