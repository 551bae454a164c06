"""The grader's worker process: load the corpus, build one pipeline, answer questions read from stdin.

Protocol (one JSON object per line): the parent writes {"warm_up": [every question]} once, then
{"key", "question"} per question; the worker writes {"event": "warmed"} after Pipeline.warm_up, and
{"event": "ready"|"fatal"|"answer", ...} on a private copy of stdout, and while it builds
{"event": "progress", "done", "total"} from the embedding cache (display data, never trusted). "ready" carries the Config the
pipeline used and its index (harness.records.IndexReport); "answer" carries the Answer as
harness.records.answer_to_json. Fd 1 itself is pointed at stderr, so a pipeline that prints cannot
corrupt the channel. An API key from the grader arrives in RAGKATA_GRADER_LLM_KEY and is moved, before
build_pipeline, to the variable the pipeline's Config names in llm_api_key_env; the Config reported in
"ready" carries the endpoint URL without any user:password@ part.
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
import types
from typing import Any, TextIO

# Imported before any pipeline code, so these bind the interviewer's own exercise.contracts.
from exercise.contracts import IndexStats
from grader.isolation import FORWARD_VARIABLE, forward_inside
from grader.sandbox import KEY_VARIABLE, without_userinfo
from harness.progress import catch_embedding_progress
from harness.records import answer_to_json
from harness.runner import index_report, used_config, warm_up


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def where(exc: BaseException) -> str:
    """The last frames of the traceback, for the scorecard's error lines."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])[-1500:]


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


def build(args: argparse.Namespace, api_key: str | None = None) -> tuple[Any, dict]:
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
    key_env = getattr(config, "llm_api_key_env", None)
    if api_key and isinstance(key_env, str) and key_env:
        os.environ[key_env] = api_key  # where the pipeline's generator looks for it
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
    seconds = time.perf_counter() - started
    # index_report reads `.index_stats` off a pipeline; hand it the stats as the interviewer's IndexStats.
    index = index_report(types.SimpleNamespace(index_stats=index_stats(pipeline)), seconds)
    used = json.loads(json.dumps(used_config(pipeline, config), default=str))
    if isinstance(used.get("llm_base_url"), str):
        used["llm_base_url"] = without_userinfo(used["llm_base_url"])
    return pipeline, {"config": used, "index": index.to_json()}


def index_stats(pipeline: Any) -> IndexStats | None:
    """The pipeline's IndexStats, read field by field (a candidate's pipeline has its own copy of the
    class); None when it has none, e.g. an older pipeline that exposes a dict."""
    stats = getattr(pipeline, "index_stats", None)
    try:
        return IndexStats(int(stats.chunks), float(stats.build_seconds), bool(stats.cached))
    except (AttributeError, TypeError, ValueError):
        return None


def progress_sender(send, every_s: float = 1.0):
    """(done, total) -> a {"event": "progress", "done", "total"} line, at most one a second and always the last;
    the parent only displays it."""
    last = [float("-inf")]

    def forward(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            send({"event": "progress", "done": done, "total": total})

    return forward


def serve(pipeline: Any, requests: TextIO, send) -> None:
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        started = time.perf_counter()
        if "warm_up" in request:  # every question this worker will be asked, before any is timed
            try:
                warm_up(pipeline, [str(q) for q in request["warm_up"]])
            except BaseException as exc:  # noqa: BLE001 - a failed warm-up leaves the work to each question
                print(f"--- warm_up:\n{where(exc)}", file=sys.stderr, flush=True)
            send({"event": "warmed", "seconds": time.perf_counter() - started})
            continue
        message: dict = {"event": "answer", "key": request["key"]}
        try:
            message["answer"] = answer_to_json(pipeline.answer(request["question"]))
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
    api_key = os.environ.pop(KEY_VARIABLE, None)  # before any pipeline code runs
    route = os.environ.pop(FORWARD_VARIABLE, None)
    if route:  # in a jail: the interviewer's endpoint is reached through the relay (grader/isolation.py)
        forward_inside(route)

    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    os.dup2(2, 1)  # anything the pipeline prints lands in the log, not in the protocol
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # and anything it reads is empty, not the next question
    sys.stdout, sys.stdin = sys.stderr, open(os.devnull, encoding="utf-8")

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    try:
        with catch_embedding_progress(progress_sender(send)):  # the embedding cache's progress, for display
            pipeline, info = build(args, api_key)
    except BaseException as exc:  # noqa: BLE001 - report any start-up failure, then stop
        send({"event": "fatal", "error": describe(exc), "where": where(exc)})
        return 1
    send({"event": "ready", **info, "peak_rss_mb": round(peak_rss_mb(), 1)})
    serve(pipeline, requests, send)
    return 0


if __name__ == "__main__":
    sys.exit(main())
