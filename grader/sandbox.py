"""Run one pipeline in a worker subprocess with a per-question time limit and a memory cap.

The parent sends one question at a time and waits for its answer. No answer in time: the worker is
killed, the question is recorded as a TimeoutError, and a fresh worker takes the remaining questions.
A worker that dies records the question it was on as an error; one that cannot start records every
question as an error. Nothing here raises because of what the pipeline does.
A side whose Config says generator=llm gets a longer limit (question_timeout) and the interviewer's
endpoint (Endpoint): its URL and model as RAGKATA_LLM_* variables, its key in the worker's environment
only, never on a command line, and blanked out of every error line and log this module keeps.
A candidate's worker starts inside its Jail (isolation.py), which keeps it from the interviewer's files,
network and processes; the starter and the reference are the interviewer's code and run unjailed. The
worker's output goes to a CappedLog, so a pipeline that prints without end cannot fill the disk, and each
side has a wall-time limit (Limits.side_timeout_s) after which its remaining questions are not run.
Left out on purpose: scoring (grade.py). The memory cap is RLIMIT_AS, which Linux enforces and macOS ignores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from exercise.contracts import Answer
from grader.capped_log import CappedLog
from grader.isolation import INTERVIEWER_ROOT, Jail
from harness.records import IndexReport, answer_from_json

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # an answer line larger than this counts as a crash
KEY_VARIABLE = "RAGKATA_GRADER_LLM_KEY"  # carries the API key to the worker, which moves it to the Config's llm_api_key_env
LLM_TRIES, LLM_BACKOFF_S = 3, 3.0  # as exercise/llm.py: TRIES calls per question, with waits of 1 s and 2 s between


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0  # per question, from sending it to reading its answer
    llm_timeout_s: float | None = None  # per question for a generator=llm side; None: question_timeout works it out
    build_timeout_s: float = 900.0  # loading the corpus and build_pipeline (a first dense build embeds it all)
    side_timeout_s: float = 3600.0  # one side's whole run, builds and questions; what is left then is not run
    memory_mb: int = 6144  # address-space cap of the worker (torch alone maps ~3 GB); 0 = no cap
    max_restarts: int = 30  # after this many kills or crashes in all, the remaining questions are not run
    max_in_a_row: int = 5  # ... or after this many questions in a row time out or crash: the pipeline is stuck


@dataclass(frozen=True)
class Target:
    """One pipeline to run: a package name, and the folder the worker starts in."""

    label: str  # "starter", "candidate" or "reference"
    module: str  # package whose pipeline.py has build_pipeline(), e.g. "exercise" or "grader.solutions"
    root: Path  # working directory; for a candidate also the folder whose exercise/ is imported
    candidate: bool = False  # import `exercise` from root instead of the interviewer's repository
    config: tuple[str, ...] = ()  # name=value overrides of the pipeline's own Config defaults


@dataclass(frozen=True)
class Endpoint:
    """The interviewer's language-model endpoint, given to every worker; only a generator=llm side calls it."""

    base_url: str | None = None  # replaces the Config's llm_base_url; None keeps the pipeline's own
    model: str | None = None  # replaces llm_model; None keeps the pipeline's own
    api_key: str | None = field(default=None, repr=False)  # reaches the worker in its environment, nowhere else
    api_key_env: str | None = None  # the interviewer's variable the key was read from, named in the scorecard

    def environment(self) -> dict[str, str]:
        """What the worker's environment gains: RAGKATA_LLM_BASE_URL, RAGKATA_LLM_MODEL and the key."""
        env = {"RAGKATA_LLM_BASE_URL": self.base_url or "", "RAGKATA_LLM_MODEL": self.model or "",
               KEY_VARIABLE: self.api_key or ""}
        return {name: value for name, value in env.items() if value}

    def scrub(self, text: str) -> str:
        """The text with the API key blanked out, in case a pipeline or a server echoed it."""
        return text.replace(self.api_key, "***") if self.api_key and text else text


def interviewer_endpoint(base_url: str | None, model: str | None, api_key_env: str | None,
                         config_overrides: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> Endpoint:
    """The Endpoint of `ragkata-grader grade --llm-base-url --llm-model`, with the key read from the interviewer's
    variable api_key_env (default: the interviewer's own Config llm_api_key_env, e.g. RAGKATA_LLM_API_KEY).

    ValueError for a URL that is not http(s) with a host, or a flag that a --config override contradicts.
    """
    environ = os.environ if environ is None else environ
    if base_url is not None:
        try:
            parts = urlsplit(base_url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"--llm-base-url {without_userinfo(base_url)!r} is not an http or https URL with a host; "
                             "example: --llm-base-url http://127.0.0.1:8081/v1")
    for flag, name, value in (("--llm-base-url", "llm_base_url", base_url), ("--llm-model", "llm_model", model)):
        if value is not None and any(pair.partition("=")[0].strip() == name for pair in config_overrides):
            raise ValueError(f"{flag} and --config {name}=... both choose {name}; keep {flag} alone")
    if api_key_env is None:
        from exercise.config import Config  # the interviewer's, with their RAGKATA_* variables

        api_key_env = Config().with_environment(dict(environ)).llm_api_key_env
    return Endpoint(base_url, model, environ.get(api_key_env) or None, api_key_env)


def endpoint_host(url: object) -> str | None:
    """host:port of an endpoint URL, without scheme, user, password or path.

    "http://user:pw@10.0.0.5:8081/v1" -> "10.0.0.5:8081"; "https://api.example.com/v1" -> "api.example.com".
    """
    try:
        parts = urlsplit(str(url or ""))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def without_userinfo(url: str) -> str:
    """The URL without a user:password@ part: "http://u:p@h:1/v1" -> "http://h:1/v1"; others unchanged."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    except ValueError:
        return url


def uses_llm(config: Mapping[str, Any]) -> bool:
    """Whether a pipeline built with this (used) Config generates with a language model."""
    return config.get("generator") == "llm"


def question_timeout(limits: Limits, config: Mapping[str, Any]) -> float:
    """The per-question limit for a pipeline built with `config`, the Config it used.

    Extractive: limits.timeout_s. generator=llm: limits.llm_timeout_s when set (--timeout sets it), else the
    pipeline's own limit plus the generator's worst case, every try timing out:
    timeout_s + LLM_TRIES × llm_timeout_s + LLM_BACKOFF_S, e.g. 30 + 3 × 60 + 3 = 213 s.
    """
    if not uses_llm(config):
        return limits.timeout_s
    if limits.llm_timeout_s is not None:
        return limits.llm_timeout_s
    try:
        per_call = float(config.get("llm_timeout_s", 60.0))
    except (TypeError, ValueError):
        per_call = 60.0
    per_call = per_call if math.isfinite(per_call) and per_call > 0 else 60.0
    return limits.timeout_s + LLM_TRIES * per_call + LLM_BACKOFF_S


@dataclass(frozen=True)
class Outcome:
    """What one question produced: an Answer, or an error line; never both."""

    key: str
    answer: Answer | None
    error: str | None
    wall_ms: float


@dataclass(frozen=True)
class Build:
    """A pipeline as built, from the worker's ready message: the Config it used and its index."""

    config: Mapping[str, Any]  # the Config the pipeline really used (harness.runner.used_config)
    index: IndexReport  # build_seconds: the index alone; pipeline_seconds: the whole build_pipeline call

    def to_json(self) -> dict:
        return {"config": dict(self.config), "index": self.index.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Build:
        return cls(dict(data.get("config") or {}), IndexReport.from_json(data.get("index") or {}))


@dataclass
class Session:
    """What happened while running one target: its build, and every incident worth a line."""

    build: Build | None = None  # from the first worker that became ready
    incidents: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    timeouts: int = 0
    crashes: int = 0
    not_run: int = 0
    timeout_s: float | None = None  # the per-question limit, chosen once the pipeline is built (question_timeout)
    on_progress: Callable[[int, int], None] | None = field(default=None, repr=False, compare=False)  # display only


class WorkerDied(Exception):
    pass


class _Worker:
    """One worker process and the byte buffer of its protocol channel."""

    def __init__(self, target: Target, corpus: Path, limits: Limits, log: CappedLog, endpoint: Endpoint = Endpoint(),
                 jail: Jail | None = None):
        variables = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
                     "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **endpoint.environment()}
        cmd = ["python", "-P", "-m", "grader.worker", "--pipeline", target.module,
               "--corpus", jail.corpus_path if jail else str(corpus), "--config", json.dumps(list(target.config))]
        if target.candidate:
            cmd += ["--candidate-root", jail.root if jail else str(target.root)]
        if jail:
            argv, env, cwd = jail.command(cmd, variables)
        else:  # the interviewer's own code: the starter or the reference
            path = os.pathsep.join([str(INTERVIEWER_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            argv, env, cwd = [sys.executable, *cmd[1:]], {**os.environ, "PYTHONPATH": path, **variables}, target.root
        self.log, self.jail = log, jail
        log.write(f"--- {time.strftime('%H:%M:%S')} start {target.label}: {' '.join(cmd)}\n".encode())
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=memory_cap(limits.memory_mb))
        self.pump = log.pump(self.proc.stderr)
        self.buffer = b""

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the read that follows sees the dead worker

    def read(self, timeout_s: float) -> dict | None:
        """The next protocol message, None when none arrives within timeout_s; WorkerDied on exit."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while True:
            if b"\n" in self.buffer:
                line, _, self.buffer = self.buffer.partition(b"\n")
                try:
                    message = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # not ours: skip stray bytes rather than trust them
                if isinstance(message, dict):
                    return message
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied(self._exit_text())
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                self.kill()
                raise WorkerDied(f"sent a message over {MAX_MESSAGE_BYTES // 2**20} MB")

    def _exit_text(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the whole group: the pipeline's own children too
        except (ProcessLookupError, PermissionError):
            pass
        if self.jail:
            self.jail.kill()  # a container outlives its client
        self.proc.wait()
        self.close()
        self.pump.join(timeout=5)

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        """Close stdin so the worker ends by itself; kill it if it does not."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


def memory_cap(memory_mb: int):
    if memory_mb <= 0:
        return None

    def apply() -> None:
        limit = memory_mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass  # macOS refuses RLIMIT_AS; the run goes on without a cap

    return apply


def log_tail(log: CappedLog, lines: int = 6) -> str:
    """The last lines of the worker log, for error lines in the scorecard."""
    try:
        text = log.last_text()
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run_target(target: Target, questions: Sequence[tuple[str, str]], corpus: Path, limits: Limits, log: Path,
               session: Session, endpoint: Endpoint = Endpoint(), jail: Jail | None = None) -> Iterator[Outcome]:
    """Answer every (key, question) in order, one Outcome each, whatever the pipeline does.

    The worker runs inside `jail` when one is given. Error lines, incidents and the worker log (capped:
    CappedLog) are kept with the endpoint's API key blanked out.
    """
    capped = CappedLog(log)
    try:
        for outcome in _run(target, questions, corpus, limits, capped, session, endpoint, jail):
            yield dataclasses.replace(outcome, error=endpoint.scrub(outcome.error)) if outcome.error else outcome
    finally:
        capped.close()
        limit = session.timeout_s if session.timeout_s is not None else limits.timeout_s
        if session.timeouts:
            session.incidents.append(f"{target.label} pipeline: {session.timeouts} question(s) timed out "
                                     f"(limit {limit:g} s per question)")
        if session.crashes:
            session.incidents.append(f"{target.label} pipeline: the worker died on {session.crashes} question(s); "
                                     f"see {log}")
        session.incidents[:] = [endpoint.scrub(incident) for incident in session.incidents]
        _scrub_file(log, endpoint)


def _scrub_file(path: Path, endpoint: Endpoint) -> None:
    """Blank the API key out of a log the pipeline wrote to, should it have printed it."""
    if not endpoint.api_key:
        return
    try:
        data = path.read_bytes()
        key = endpoint.api_key.encode()
        if key in data:
            path.write_bytes(data.replace(key, b"***"))
    except OSError:
        pass


def _run(target: Target, questions: Sequence[tuple[str, str]], corpus: Path, limits: Limits, log: CappedLog,
         session: Session, endpoint: Endpoint, jail: Jail | None) -> Iterator[Outcome]:
    pending = list(questions)
    restarts = in_a_row = 0
    ever_ready = False
    deadline = time.monotonic() + limits.side_timeout_s
    while pending:
        try:
            worker = _Worker(target, corpus, limits, log, endpoint, jail)
            ready = _until_ready(worker, min(limits.build_timeout_s, max(0.0, deadline - time.monotonic())),
                                 session.on_progress)
        except WorkerDied as exc:
            ready = {"event": "fatal", "error": f"WorkerDied: the worker {exc} before it was ready"}
        except OSError as exc:
            session.incidents.append(f"{target.label} pipeline: could not start a worker: {exc}")
            for key, _ in pending:
                yield Outcome(key, None, f"PipelineBuildError: could not start a worker: {exc}", 0.0)
            return
        if ready is None:
            ready = {"event": "fatal", "error": f"TimeoutError: the pipeline did not build within {limits.build_timeout_s:g} s "
                                                "(--build-timeout; embeddings are cached as they are made, so grading again resumes)"
                     if time.monotonic() < deadline else f"TimeoutError: the side's wall-time limit of "
                                                         f"{limits.side_timeout_s:g} s ran out (--side-timeout)"}
        if ready.get("event") != "ready":
            worker.kill()
            error = str(ready.get("error", "unknown start-up failure"))
            detail = str(ready.get("where", "")).strip() or log_tail(log)
            when = "after a restart" if ever_ready else "at start-up"
            session.incidents.append(f"{target.label} pipeline failed {when}: {error}"
                                     + (f"\n{detail}" if detail else "") + f" ({len(pending)} questions scored as errors)")
            for key, _ in pending:
                yield Outcome(key, None, f"PipelineBuildError: {error}", 0.0)
            return
        if not ever_ready:
            session.build = _as_called(Build.from_json(ready), jail, endpoint)
            session.timeout_s = question_timeout(limits, session.build.config)
        timeout_s = session.timeout_s if session.timeout_s is not None else limits.timeout_s
        ever_ready = True
        worker.send({"warm_up": [question for _, question in pending]})  # untimed, within the build's limits
        try:
            warmed = _until_ready(worker, min(limits.build_timeout_s, max(0.0, deadline - time.monotonic())),
                                  session.on_progress)
        except WorkerDied:
            warmed = {}  # the first question meets the dead worker and records the crash
        if warmed is None:
            session.incidents.append(f"{target.label} pipeline: its warm_up did not finish within the build limit; "
                                     "each question pays for its own preparation")
        session.peak_rss_mb = max(session.peak_rss_mb, _number(ready.get("peak_rss_mb")))
        broke = False
        while pending and not broke:
            if time.monotonic() >= deadline:
                worker.kill()
                yield from _not_run(target, pending, session, f"the side's wall-time limit of {limits.side_timeout_s:g} s "
                                                              "ran out (--side-timeout)")
                return
            key, question = pending[0]
            started = time.perf_counter()
            worker.send({"key": key, "question": question})
            try:
                message = _answer_for(worker, key, min(timeout_s, max(0.0, deadline - time.monotonic())))
            except WorkerDied as exc:
                wall_ms = (time.perf_counter() - started) * 1000
                cap = f"; a memory cap of {limits.memory_mb} MB is set" if limits.memory_mb else ""
                yield Outcome(key, None, f"WorkerCrash: the worker {exc} on this question{cap}", wall_ms)
                session.crashes += 1
                pending.pop(0)
                in_a_row += 1
                broke = True
                continue
            wall_ms = (time.perf_counter() - started) * 1000
            if message is None and time.monotonic() >= deadline:  # the side's limit cut this question short
                worker.kill()
                yield from _not_run(target, pending, session, f"the side's wall-time limit of {limits.side_timeout_s:g} s "
                                                              "ran out (--side-timeout)")
                return
            pending.pop(0)
            in_a_row = in_a_row + 1 if message is None else 0
            if message is None:
                worker.kill()
                session.timeouts += 1
                yield Outcome(key, None, f"TimeoutError: no answer within {timeout_s:g} s "
                                         "(per-question limit; the worker was killed and restarted)", wall_ms)
                broke = True
                continue
            session.peak_rss_mb = max(session.peak_rss_mb, _number(message.get("peak_rss_mb")))
            if "error" in message:
                error = str(message["error"])[:2000]
                if error.startswith("MemoryError") and limits.memory_mb:
                    error += f" (the worker's memory cap is {limits.memory_mb} MB; --memory-mb to change)"
                yield Outcome(key, None, error, wall_ms)
                continue
            try:
                answer = answer_from_json(question, message.get("answer"))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                yield Outcome(key, None, f"malformed: {exc}" if isinstance(exc, ValueError) else
                              f"malformed: the answer could not be read ({type(exc).__name__}: {exc})", wall_ms)
                continue
            yield Outcome(key, answer, None, wall_ms)
        if broke:
            worker.kill()
            restarts += 1
            if pending and (restarts >= limits.max_restarts or in_a_row >= limits.max_in_a_row):
                yield from _not_run(target, pending, session, f"{in_a_row} questions in a row timed out or crashed"
                                    if in_a_row >= limits.max_in_a_row else f"the worker was restarted {restarts} times")
                return
        else:
            worker.stop()


def _not_run(target: Target, pending: Sequence[tuple[str, str]], session: Session, why: str) -> Iterator[Outcome]:
    """Stop this side: every pending question is scored as an error without running, and an incident says why."""
    session.not_run += len(pending)
    session.incidents.append(f"{target.label} pipeline: stopped because {why}; {len(pending)} remaining questions "
                             "scored as errors without running")
    for key, _ in pending:
        yield Outcome(key, None, f"NotRun: {why}; grading of this pipeline stopped", 0.0)


def _as_called(build: Build, jail: Jail | None, endpoint: Endpoint) -> Build:
    """The build with the endpoint named as the interviewer gave it, not as the jail's route rewrote it."""
    if jail and jail.route and endpoint.base_url and build.config.get("llm_base_url") == jail.route.inside_url:
        return dataclasses.replace(build, config={**build.config, "llm_base_url": without_userinfo(endpoint.base_url)})
    return build


def _number(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _until_ready(worker: _Worker, timeout_s: float, on_progress: Callable[[int, int], None] | None) -> dict | None:
    """The worker's first message that is not a progress line, None after timeout_s. A progress line
    ({"event": "progress", "done", "total"}) is untrusted display data: two ints, 0 <= done <= total, or ignored."""
    deadline = time.monotonic() + timeout_s
    while True:
        message = worker.read(max(0.0, deadline - time.monotonic()))
        if message is None or message.get("event") != "progress":
            return message
        done, total = message.get("done"), message.get("total")
        if on_progress and type(done) is int and type(total) is int and 0 <= done <= total < 10**9:
            on_progress(done, total)


def _answer_for(worker: _Worker, key: str, timeout_s: float) -> dict | None:
    """The answer message for `key`; messages for other keys (impossible unless forged) are skipped."""
    deadline = time.monotonic() + timeout_s
    while True:
        message = worker.read(max(0.0, deadline - time.monotonic()))
        if message is None or (message.get("event") == "answer" and message.get("key") == key):
            return message
