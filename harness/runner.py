"""Run a pipeline over a golden file and write runs/<run_id>/: spec.json, samples.jsonl, summary.json.

Each question is scored and appended to samples.jsonl the moment it finishes, so a crash, Ctrl-C or
kill loses nothing already scored, and `--resume` picks up where the run stopped. summary.json is
computed from the sample lines alone. Left out on purpose: parallel questions (latency figures would
lie on 2 cores) and killing a hung question's thread (Python cannot; the grader uses subprocesses).
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
from exercise.contracts import Answer, Document, IndexStats, Pipeline
from harness.corpus import corpus_hash, load_corpus, read_canaries
from harness.golden import GoldenQuestion, read_golden
from harness.records import IndexReport, RunSummary, Sample
from harness.scoring import score_sample, summarize

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
    """The complete lines of a samples.jsonl; a torn last line (from a kill mid-write) is dropped."""
    if not path.is_file():
        return []
    samples = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            break
        samples.append(Sample.from_json(data))
    return samples


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


@dataclass
class Run:
    """A run folder being written. Iterate `questions()` to answer, score and append one by one."""

    spec: RunSpec
    directory: Path
    questions_todo: list[GoldenQuestion]
    canaries: dict[str, str]
    pipeline: Pipeline
    index: IndexReport
    meta: dict  # RunSummary's run_id, pipeline, config, git, corpus, golden, environment

    def questions(self, on_done: Callable[[Sample], None] = lambda s: None) -> Iterator[Sample]:
        with (self.directory / "samples.jsonl").open("a", encoding="utf-8") as out:
            for question in self.questions_todo:
                started = time.perf_counter()
                answer, error = call_with_timeout(lambda q=question.question: self.pipeline.answer(q), self.spec.timeout_s)
                wall_ms = (time.perf_counter() - started) * 1000
                sample = score_sample(question, answer, error, self.canaries, wall_ms)
                append_sample(out, sample)
                on_done(sample)
                yield sample

    def finish(self, complete: bool = True, extra: dict | None = None) -> RunSummary:
        """Write summary.json from the sample lines on disk, and point runs/latest here."""
        samples = read_samples(self.directory / "samples.jsonl")
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
              pipeline: str = "exercise", timeout_s: float = DEFAULT_TIMEOUT_S, resume: Path | str | None = None) -> Run:
    """Load everything, build the pipeline, and open the run folder (new, or an existing one to resume)."""
    git = git_state()
    if resume is not None:
        directory = Path(resume)
        spec_path = directory / "spec.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"{spec_path}: not a run folder (no spec.json); pass --resume runs/<run_id>")
        spec = RunSpec(**json.loads(spec_path.read_text(encoding="utf-8")))
        config = Config(**spec.config)
    else:
        config = config or Config()
        directory = runs_dir() / new_run_id(git["commit"])
        while directory.exists():  # two runs in the same second
            directory = directory.with_name(directory.name + "b")
        spec = RunSpec(directory.name, pipeline, str(corpus), str(golden), config.to_dict(), timeout_s)
    questions = read_golden(spec.golden)
    documents = load_corpus(spec.corpus)
    canaries = read_canaries(spec.corpus)
    started = time.perf_counter()
    built_pipeline = load_pipeline(spec.pipeline, config, documents)
    index = index_report(built_pipeline, time.perf_counter() - started)
    directory.mkdir(parents=True, exist_ok=True)
    if resume is None:
        write_json(directory / "spec.json", spec.__dict__)
    done = {s.id for s in read_samples(directory / "samples.jsonl")}
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
    return Run(spec, directory, [q for q in questions if q.id not in done], canaries, built_pipeline, index, meta)


def _truncate_torn_line(path: Path) -> None:
    """Drop a half-written last line so appended lines start cleanly."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
