"""Run a pipeline over a golden file and write runs/<run_id>/: spec.json, samples.jsonl, summary.json.

Each question is scored and appended to samples.jsonl the moment it and every question before it are
done, so a crash, Ctrl-C or kill loses nothing already written, and `--resume` answers what is missing
or ended in an error. summary.json is computed from the sample lines alone. `--workers N` answers N
questions at once in threads (worth it when a model server does the work; per-stage latencies then
include waiting for the cores). Left out on purpose: processes, and killing a hung question's thread
(Python cannot; the grader uses subprocesses).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

from exercise.config import Config
from exercise.contracts import SCORED_DEPTH, Answer, Document, IndexStats, Pipeline
from harness.corpus import corpus_hash, load_corpus, read_canaries
from harness.golden import GoldenQuestion, golden_tags, read_golden
from harness.metrics import DOC_DEPTH
from harness.records import IndexReport, RunSummary, Sample
from harness.sampling import stratified_sample
from harness.scoring import SourceCorpus, score_sample, summarize

RUNS_DIR_ENV = "RAGKATA_RUNS_DIR"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunSpec:
    """What a run was asked to do; written first as spec.json so a run can be resumed exactly."""

    run_id: str
    pipeline: str  # module providing build_pipeline(config, documents), e.g. "exercise"
    corpus: str
    golden: str
    config: dict
    timeout_s: float
    limit: int | None = None  # --limit: size of the stratified sample (harness/sampling.py); None = every question
    seed: int = 0  # --seed of that sample
    question_ids: list[str] | None = None  # the sampled ids in golden-file order, so --resume is exact
    workers: int = 1  # --workers: questions answered at once


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_state(cwd: Path | str = ".") -> dict:
    """{"commit": sha or None, "dirty": bool}; a folder outside git gives commit None."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": False}
    return {"commit": commit, "dirty": dirty}


def new_run_id(commit: str | None, now: datetime | None = None) -> str:
    """A run id sorts by time and carries the commit: 20261122T161530-3fa9c1e (or -nogit)."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{commit[:7] if commit else 'nogit'}"


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def environment() -> dict:
    versions = {}
    for name in ("numpy", "faiss", "rank_bm25", "torch", "sentence_transformers"):
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", "loaded") if module else None
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions}


def load_pipeline(module: str, config: Config, documents: Sequence[Document]) -> Pipeline:
    """Import `<module>.pipeline` (or `module` itself) and call its build_pipeline(config, documents)."""
    try:
        target = importlib.import_module(f"{module}.pipeline")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"{module}.pipeline", module):
            raise
        target = importlib.import_module(module)
    build = getattr(target, "build_pipeline", None)
    if build is None:
        raise ValueError(f"{target.__name__} has no build_pipeline(config, documents); --pipeline must name a "
                         "package with a pipeline.py that defines it, like 'exercise'")
    return build(config, documents)


def search_documents(pipeline: Pipeline, question: str, depth: int = DOC_DEPTH) -> Answer:
    """A retrieval-only question's Answer: pipeline.search(question, k) as deep as `depth` distinct documents
    need, no context, no text. k starts at max(4 x depth, SCORED_DEPTH) hits and doubles while the hits
    hold fewer than `depth` documents and the pipeline returned all k asked for (when it returns fewer,
    the index is exhausted), up to 64 x depth hits.
    """
    started = time.perf_counter()
    k = max(4 * depth, SCORED_DEPTH)
    while True:
        hits = list(pipeline.search(question, k))
        if len({hit.chunk.doc_id for hit in hits}) >= depth or len(hits) < k or k >= 64 * depth:
            break
        k *= 2
    ms = (time.perf_counter() - started) * 1000
    return Answer(question=question, text="", citations=(), abstained=False, retrieved=tuple(hits), context=(),
                  latency_ms={"search": ms, "total": ms})


def call_with_timeout(fn: Callable[[], Answer], timeout_s: float) -> tuple[Answer | None, str | None]:
    """Run fn in a worker thread; (answer, None), or (None, error text) on exception or time-out."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    try:
        return future.result(timeout=timeout_s), None
    except concurrent.futures.TimeoutError:
        return None, f"TimeoutError: no answer within {timeout_s:g} s (per-question limit; --timeout to change)"
    except Exception as exc:  # the candidate's code may raise anything; record it and go on
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def read_samples(path: Path) -> list[Sample]:
    """The complete lines of a samples.jsonl, the last line per id, in the order ids first appear.

    A torn last line (from a kill mid-write) is dropped. A line written by `--resume` for a question
    that had failed supersedes the failed one: lines a, b(error), c, b -> samples a, b, c.
    """
    if not path.is_file():
        return []
    samples: dict[str, Sample] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            break
        sample = Sample.from_json(data)
        samples[sample.id] = sample  # a repeated id keeps its first position
    return list(samples.values())


def append_sample(out, sample: Sample) -> None:
    """Write one samples.jsonl line and flush it, so a kill right after loses nothing."""
    out.write(json.dumps(sample.to_json(), ensure_ascii=False) + "\n")
    out.flush()


def index_report(pipeline: object, pipeline_seconds: float) -> IndexReport:
    """What the pipeline says of its index (IndexStats, if it has one) and what the harness timed around it."""
    stats = getattr(pipeline, "index_stats", None)
    if not isinstance(stats, IndexStats):
        return IndexReport(None, None, None, round(pipeline_seconds, 3))
    embedded = stats.chunks and stats.build_seconds > 0 and not stats.cached  # a cache hit embeds nothing
    return IndexReport(stats.chunks, round(stats.build_seconds, 3), stats.cached, round(pipeline_seconds, 3),
                       round(stats.chunks / stats.build_seconds, 1) if embedded else None)


def used_config(pipeline: object, asked: Config) -> dict:
    """The Config the pipeline ran with (`pipeline.config`), which may differ from the one asked for."""
    config = getattr(pipeline, "config", None)
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else asked.to_dict()


def warm_up(pipeline: object, questions: Sequence[str]) -> None:
    """Let the pipeline prepare for a run's questions before any is timed, if it can (Pipeline.warm_up):
    the starter encodes the new ones in one batch, so no question pays for loading the model."""
    hook = getattr(pipeline, "warm_up", None)
    if callable(hook):
        hook(list(questions))


@dataclass
class Run:
    """A run folder being written. Iterate `questions()` to answer, score and append one by one."""

    spec: RunSpec
    directory: Path
    questions_todo: list[GoldenQuestion]
    corpus: SourceCorpus  # document texts and canaries, for scoring
    pipeline: Pipeline
    index: IndexReport
    meta: dict  # RunSummary's run_id, pipeline, config, git, corpus, golden, environment
    workers: int = 1  # questions answered at once

    def questions(self, on_done: Callable[[Sample], None] = lambda s: None) -> Iterator[Sample]:
        """Answer up to `workers` questions at once; score and append them one by one, in question order.

        An answer that finishes before an earlier question's waits in memory (in its future) until that
        one is written. On Ctrl-C, or when the caller stops iterating, questions not yet started are
        cancelled; lines already written stay.
        """
        warm_up(self.pipeline, [question.question for question in self.questions_todo])
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ragkata-question")
        try:
            futures = [pool.submit(self._answer, question) for question in self.questions_todo]
            with (self.directory / "samples.jsonl").open("a", encoding="utf-8") as out:
                for question, future in zip(self.questions_todo, futures):
                    answer, error, wall_ms = future.result()
                    sample = score_sample(question, answer, error, self.corpus, wall_ms)
                    append_sample(out, sample)
                    on_done(sample)
                    yield sample
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _answer(self, question: GoldenQuestion) -> tuple[Answer | None, str | None, float]:
        """(answer, error, wall ms) for one question, within the per-question time limit. A retrieval-only
        question is searched (search_documents), not answered."""
        started = time.perf_counter()
        ask = (lambda: search_documents(self.pipeline, question.question)) if question.retrieval_only else \
            (lambda: self.pipeline.answer(question.question))
        answer, error = call_with_timeout(ask, self.spec.timeout_s)
        return answer, error, (time.perf_counter() - started) * 1000

    def finish(self, complete: bool = True, extra: dict | None = None) -> RunSummary:
        """Write summary.json from the sample lines on disk, and point runs/latest here. A --limit run says so
        in a "sample" section: {"limit": 50, "seed": 0}."""
        samples = read_samples(self.directory / "samples.jsonl")
        if self.spec.limit is not None:
            extra = {"sample": {"limit": self.spec.limit, "seed": self.spec.seed}, **(extra or {})}
        summary = RunSummary(summarize(samples), **self.meta, index=self.index, complete=complete,
                             peak_rss_mb=round(peak_rss_mb(), 1),
                             finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), extra=extra or {})
        write_json(self.directory / "summary.json", summary.to_json())
        point_latest(self.directory)
        return summary


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def point_latest(directory: Path) -> None:
    link = directory.parent / "latest"
    tmp = directory.parent / f".latest-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(directory.name)
    os.replace(tmp, link)


def start_run(golden: Path | str, corpus: Path | str = "corpus", config: Config | None = None,
              pipeline: str = "exercise", timeout_s: float = DEFAULT_TIMEOUT_S, resume: Path | str | None = None,
              limit: int | None = None, seed: int = 0, workers: int | None = None) -> Run:
    """Load everything, build the pipeline, and open the run folder (new, or an existing one to resume).

    A new run answers every question, or the stratified sample of `limit` (harness/sampling.py). A resumed
    run takes pipeline, inputs, config, limit and sample from its spec.json, and answers the questions that
    have no line yet or whose last line is an error. `workers` defaults to 1, or to the resumed run's own.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}; example: --workers 4")
    git = git_state()
    if resume is not None:
        directory = Path(resume)
        spec_path = directory / "spec.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"{spec_path}: not a run folder (no spec.json); pass --resume runs/<run_id>")
        spec = RunSpec(**json.loads(spec_path.read_text(encoding="utf-8")))
        config = Config(**spec.config)
        questions = _sampled(read_golden(spec.golden, golden_tags(spec.corpus)), spec)
    else:
        config = config or Config()
        directory = runs_dir() / new_run_id(git["commit"])
        while directory.exists():  # two runs in the same second
            directory = directory.with_name(directory.name + "b")
        questions = read_golden(golden, golden_tags(corpus))
        if limit is not None:
            questions = stratified_sample(questions, limit, seed)
        spec = RunSpec(directory.name, pipeline, str(corpus), str(golden), config.to_dict(), timeout_s, limit, seed,
                       [q.id for q in questions] if limit is not None else None, workers or 1)
    documents = load_corpus(spec.corpus)
    corpus = SourceCorpus({d.doc_id: d.text for d in documents}, read_canaries(spec.corpus))
    started = time.perf_counter()
    built_pipeline = load_pipeline(spec.pipeline, config, documents)
    index = index_report(built_pipeline, time.perf_counter() - started)
    directory.mkdir(parents=True, exist_ok=True)
    if resume is None:
        write_json(directory / "spec.json", spec.__dict__)
    done = {s.id for s in read_samples(directory / "samples.jsonl") if s.error is None}  # errors are asked again
    if resume is not None:
        _truncate_torn_line(directory / "samples.jsonl")
    meta = {
        "run_id": spec.run_id,
        "pipeline": spec.pipeline,
        "config": used_config(built_pipeline, config),
        "git": git,
        "corpus": {"path": spec.corpus, "sha256": corpus_hash(spec.corpus)},
        "golden": {"path": spec.golden, "sha256": file_sha256(spec.golden)},
        "environment": environment(),
    }
    return Run(spec, directory, [q for q in questions if q.id not in done], corpus, built_pipeline, index, meta,
               workers or spec.workers)


def _sampled(questions: list[GoldenQuestion], spec: RunSpec) -> list[GoldenQuestion]:
    """The questions of a resumed run: its recorded sample, or every question when it had no --limit."""
    if spec.question_ids is None:
        return questions
    by_id = {question.id: question for question in questions}
    missing = [qid for qid in spec.question_ids if qid not in by_id]
    if missing:
        raise ValueError(f"{spec.golden}: the run's sample names question ids that are no longer in the file "
                         f"({', '.join(missing[:5])}); restore the golden file, or start a new run")
    wanted = set(spec.question_ids)
    return [question for question in questions if question.id in wanted]


def _truncate_torn_line(path: Path) -> None:
    """Drop a half-written last line so appended lines start cleanly."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
