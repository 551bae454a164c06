"""A warm `ragkata ask`: one background process per pipeline, config and source keeps the index and model loaded.

The first `ragkata ask` starts `python -m harness.warm` detached, on a Unix socket under <cache_dir>/warm/, and
asks it; later asks connect in milliseconds. The socket's name is a digest of everything the answer depends
on: the Python, the working folder, the pipeline's module and the bytes of every file in its folder (so an edit
to exercise/*.py or exercise/prompt.md starts a fresh process), the harness code it answers through (this
module, runner.py's load_pipeline, corpus.py's load_corpus), the corpus (every
file's path, size and mtime), the whole Config and the LLM key's value. A process whose sources went stale is
stopped when the next ask starts its replacement; any process exits after `idle_minutes` without a request,
when told ("stop", `ragkata ask --stop`), on SIGTERM, or when its socket file disappears.

Protocol: one JSON line each way per connection ({"op": "ask"|"ping"|"stop", ...}). Left out on purpose:
Windows (no AF_UNIX in socketserver: ask runs cold there), reusing a running `ragkata serve`, and any
network listener.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from exercise.config import Config
from exercise.contracts import Answer
from harness.records import MalformedAnswer, answer_from_json, answer_to_json

PROTOCOL = 1
IDLE_MINUTES = 15.0
HARNESS = Path(__file__).resolve().parent
MAX_LINE = 64 * 1024 * 1024  # an answer with its hits is far smaller; a guard against garbage
ANSWERING = ("warm.py", "runner.py", "corpus.py")  # the harness code a warm answer passes through
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


class WarmError(RuntimeError):
    """The warm process could not answer: it failed to build (user_error says whether the user can fix it) or died."""

    def __init__(self, message: str, user_error: bool = False, traceback: str = ""):
        super().__init__(message)
        self.user_error = user_error
        self.traceback = traceback  # the warm process's, when the pipeline raised there


# --- when to run warm, and under which key ---------------------------------------------------------

def warm_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """RAGKATA_WARM=0 never runs warm, =1 always does; unset, warm except under pytest, so that no test starts a
    background process unless it asks for one (and then stops it)."""
    environ = os.environ if environ is None else environ
    setting = environ.get("RAGKATA_WARM", "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return "PYTEST_CURRENT_TEST" not in environ


def idle_minutes(environ: Mapping[str, str] | None = None) -> float:
    environ = os.environ if environ is None else environ
    try:
        return max(0.0, float(environ.get("RAGKATA_WARM_IDLE_MINUTES", IDLE_MINUTES)))
    except ValueError:
        return IDLE_MINUTES


def module_folder(module: str) -> Path | None:
    """The folder whose files make up `--pipeline module` (a package's folder, or a module file's folder), found
    without importing it; None for a module that lives in no file (e.g. one a test put in sys.modules)."""
    for name in (f"{module}.pipeline", module):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            continue
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            continue
        return Path(spec.origin).resolve().parent
    return None


def files_under(folder: Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    wanted = tuple(suffixes) if suffixes else None
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not name.endswith((".pyc", ".sock", ".log")) and \
                    (wanted is None or name.endswith(wanted)):
                found.append(Path(root) / name)
    return found


def content_digest(paths: Iterable[Path], base: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def corpus_fingerprint(corpus: Path) -> str:
    """Every corpus file's path, size and mtime: any edit, addition or removal changes it, in milliseconds."""
    digest = hashlib.sha256()
    for path in files_under(corpus):
        stat = path.stat()
        digest.update(f"{path.relative_to(corpus)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class WarmKey:
    """Where the warm process for one (pipeline, corpus, config, sources) lives, and the digest it answers to."""

    family: str  # working folder + pipeline name: processes of one family replace each other when sources change
    code: str  # the Python, the pipeline's and harness's sources, the corpus
    settings: str  # the config and the LLM key's value
    directory: Path
    pipeline: str
    corpus: Path
    config: Config

    @property
    def name(self) -> str:
        return f"{self.family}-{self.code}-{self.settings}"

    @property
    def digest(self) -> str:
        return self.name

    def path(self, suffix: str) -> Path:
        return self.directory / f"{self.name}{suffix}"

    @property
    def socket(self) -> Path:
        return self.path(".sock")


def warm_directory(config: Config) -> Path:
    """<cache_dir>/warm, or a per-user folder under the temp dir when that path is too long for a socket
    (macOS allows 104 bytes)."""
    directory = Path(config.cache_dir).resolve() / "warm"
    if len(str(directory)) + 48 > 100:
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        directory = Path(tempfile.gettempdir()) / f"ragkata-warm-{uid}"
    return directory


def short(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def family_of(folder: str, pipeline: str) -> str:
    """The first part of a warm process's name: the folder ask ran in and the pipeline it named."""
    return short(str(folder), pipeline)


def warm_key(pipeline: str, corpus: Path, config: Config) -> WarmKey | None:
    """The key of this ask's warm process; None when ask cannot run warm (no AF_UNIX, or a pipeline in no file)."""
    if os.name == "nt" or not hasattr(socket, "AF_UNIX"):
        return None
    folder = module_folder(pipeline)
    corpus = Path(corpus).resolve()
    if folder is None or not corpus.is_dir():
        return None
    family = family_of(os.getcwd(), pipeline)
    harness = [HARNESS / name for name in ANSWERING]
    code = short(str(PROTOCOL), sys.executable, str(folder), content_digest(files_under(folder), folder),
                 content_digest(harness, HARNESS), str(corpus), corpus_fingerprint(corpus))
    api_key = os.environ.get(config.llm_api_key_env, "")
    settings = short(json.dumps(config.to_dict(), sort_keys=True, default=str), api_key)
    return WarmKey(family, code, settings, warm_directory(config), pipeline, corpus, config)


# --- the wire ------------------------------------------------------------------------------------

def send_line(sock: socket.socket, payload: dict) -> None:
    sock.sendall(json.dumps(payload).encode() + b"\n")


def read_line(sock: socket.socket, on_wait: Callable[[], None] | None = None) -> dict:
    """One JSON line from sock; on_wait is called about every 0.2 s while none has arrived."""
    sock.settimeout(0.2 if on_wait else None)
    data = b""
    while not data.endswith(b"\n"):
        try:
            piece = sock.recv(1 << 16)
        except socket.timeout:
            on_wait()  # type: ignore[misc]
            continue
        if not piece:
            raise ConnectionError("the warm process closed the connection without answering")
        data += piece
        if len(data) > MAX_LINE:
            raise ConnectionError("the warm process sent an over-long reply")
    return json.loads(data)


# --- the client ---------------------------------------------------------------------------------

def request(path: Path, payload: dict, on_wait: Callable[[], None] | None = None, connect_timeout: float = 2.0) -> dict:
    """Send one request to the process on `path` and return its reply; OSError when nothing listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(connect_timeout)
        sock.connect(str(path))
        send_line(sock, payload)
        return read_line(sock, on_wait)


def ping(path: Path) -> dict | None:
    try:
        reply = request(path, {"op": "ping"})
    except (OSError, ValueError):
        return None
    return reply if reply.get("ok") else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = 1) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 8192))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def start_process(key: WarmKey, idle: float) -> subprocess.Popen:
    """Start the warm process detached (its own session, so Ctrl-C in this terminal leaves it alone)."""
    key.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(key.directory, 0o700)
    log = key.path(".log").open("wb")
    command = [sys.executable, "-m", "harness.warm", "--socket", str(key.socket), "--key", key.digest,
               "--pipeline", key.pipeline, "--corpus", str(key.corpus), "--idle-minutes", repr(idle),
               "--config-json", json.dumps(key.config.to_dict())]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    with log:
        return subprocess.Popen(command, cwd=os.getcwd(), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)


def claim_start(key: WarmKey) -> bool:
    """True when this ask may start the process (it created the .pid file); False when another ask already has."""
    key.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pid_file = key.path(".pid")
    for _ in range(2):
        age = 0.0
        try:
            fd = os.open(pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pid = read_pid(pid_file)
            with contextlib.suppress(OSError):
                age = time.time() - pid_file.stat().st_mtime
            if ping(key.socket) is not None:
                return False  # running
            if age < 60 and (pid is None or pid_alive(pid)):
                return False  # starting: it binds its socket within seconds
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()  # a process that died without cleaning up
            continue
        os.close(fd)
        return True
    return False


def stop(path: Path, wait_s: float = 10.0) -> int | None:
    """Tell the process on `path` to exit and wait for it; its pid, or None when none answered."""
    info = ping(path)
    if info is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        request(path, {"op": "stop"})
    pid = int(info["pid"])
    deadline = time.monotonic() + wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    return pid


def stop_all(directory: Path, family: str | None = None, keep: str | None = None,
             code_differs_from: str | None = None) -> list[int]:
    """Stop the warm processes in `directory` (of one family, if given; all but `keep`; only those whose sources
    differ from `code_differs_from`, if given); their pids."""
    stopped = []
    for sock in sorted(directory.glob("*.sock")) if directory.is_dir() else []:
        name = sock.name[:-len(".sock")]
        parts = name.split("-")
        if len(parts) != 3 or (family and parts[0] != family) or name == keep:
            continue
        if code_differs_from and parts[1] == code_differs_from:
            continue
        pid = stop(sock)
        if pid is not None:
            stopped.append(pid)
        for suffix in (".sock", ".pid", ".json", ".log"):  # what a stopped or killed process left
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{name}{suffix}").unlink()
    return stopped


def ask(key: WarmKey, question: str, on_status: Callable[[str], None] = lambda _: None,
        on_started: Callable[[int], None] = lambda _: None, idle: float | None = None) -> Answer:
    """Ask the warm process for key, starting it first when none runs (then on_started(pid) is called, and
    on_status gets the process's last log line while it builds). Raises WarmError when it cannot answer."""
    idle = idle_minutes() if idle is None else idle
    payload = {"op": "ask", "question": question, "key": key.digest}
    try:
        return reply_answer(request(key.socket, payload), question)
    except (OSError, ConnectionError):
        pass  # none runs (or it was just exiting): start one
    process: subprocess.Popen | None = None
    if claim_start(key):
        stop_all(key.directory, key.family, keep=key.name, code_differs_from=key.code)
        for suffix in (".sock", ".json"):
            with contextlib.suppress(FileNotFoundError):
                key.path(suffix).unlink()
        process = start_process(key, idle)
        key.path(".pid").write_text(str(process.pid))
        on_started(process.pid)
    wait_status = lambda: on_status(log_tail(key.path(".log")))  # noqa: E731
    try:
        return reply_answer(ask_when_listening(key, payload, process, wait_status), question)
    except KeyboardInterrupt:
        if process is not None:  # interrupted while it built: leave nothing behind
            process.terminate()
        raise
    finally:
        if process is not None:
            process.returncode = process.poll() if process.poll() is not None else 0  # detached: never waited on


def ask_when_listening(key: WarmKey, payload: dict, process: subprocess.Popen | None,
                       on_wait: Callable[[], None]) -> dict:
    """Connect once the process listens (it binds before it builds), and wait for its reply."""
    deadline = time.monotonic() + 120  # listening comes within seconds of starting; building may take minutes
    while True:
        try:
            return request(key.socket, payload, on_wait)
        except (OSError, ConnectionError) as exc:
            if process is not None and process.poll() is not None:
                raise WarmError(failure_text(key, process.returncode), user_error=status_of(key).get("user_error",
                                                                                                     False)) from exc
            if process is None and read_pid(key.path(".pid")) and not pid_alive(read_pid(key.path(".pid"))):
                raise WarmError(failure_text(key, None)) from exc
            if time.monotonic() > deadline:
                raise WarmError(f"the warm process did not listen on {key.socket} within 120 s; see "
                                f"{key.path('.log')}, or run `ragkata ask --cold`") from exc
            on_wait()
            time.sleep(0.1)


def status_of(key: WarmKey) -> dict:
    try:
        return json.loads(key.path(".json").read_text())
    except (OSError, ValueError):
        return {}


def failure_text(key: WarmKey, code: int | None) -> str:
    status = status_of(key)
    if status.get("error"):
        return str(status["error"])
    return (f"the warm process exited{f' with status {code}' if code is not None else ''} before answering; "
            f"its log ({key.path('.log')}) ends:\n{log_tail(key.path('.log'), 15)}")


def reply_answer(reply: dict, question: str) -> Answer:
    """The Answer in a reply, through the harness's one transport (records.answer_from_json)."""
    if reply.get("ok"):
        try:
            return answer_from_json(question, reply["answer"])
        except MalformedAnswer as exc:
            raise WarmError(f"the pipeline's answer breaks the contract: malformed: {exc}", user_error=True) from None
    raise WarmError(str(reply.get("error", "the warm process refused the question")),
                    user_error=bool(reply.get("user_error")), traceback=str(reply.get("traceback", "")))


# --- the process --------------------------------------------------------------------------------

class WarmServer:
    """Listens on a Unix socket at once, builds the pipeline, answers one question at a time, exits when idle."""

    def __init__(self, socket_path: Path, key: str, pipeline: str, corpus: Path, config: Config, idle_minutes: float):
        self.socket_path, self.key = socket_path, key
        self.pipeline_name, self.corpus, self.config = pipeline, corpus, config
        self.idle_s = idle_minutes * 60
        self.pipeline: Any = None
        self.failure: dict | None = None
        self.built = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # one question at a time, as one ask would run
        self.last_used = time.monotonic()
        self.busy = 0
        self.busy_lock = threading.Lock()
        self.listener: socket.socket | None = None

    def path(self, suffix: str) -> Path:
        return self.socket_path.with_suffix(suffix)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())
        self.listen()
        threading.Thread(target=self.accept_loop, name="warm-accept", daemon=True).start()
        print(f"warm ragkata process {os.getpid()}: pipeline {self.pipeline_name}, corpus {self.corpus}, "
              f"exits after {self.idle_s / 60:g} idle minutes", flush=True)
        try:
            self.build()
            while not self.stopping.wait(0.5):
                if self.idle() or not self.owns_socket():
                    break
        finally:
            self.cleanup()
        return 1 if self.failure else 0

    def listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old)
        listener.listen(16)
        listener.settimeout(0.5)
        self.listener = listener
        self.inode = self.socket_path.stat().st_ino

    def owns_socket(self) -> bool:
        try:
            return self.socket_path.stat().st_ino == self.inode
        except OSError:
            return False

    def idle(self) -> bool:
        return self.busy == 0 and time.monotonic() - self.last_used > self.idle_s

    def build(self) -> None:
        from harness.corpus import load_corpus
        from harness.runner import load_pipeline

        started = time.perf_counter()
        try:
            self.pipeline = load_pipeline(self.pipeline_name, self.config, load_corpus(self.corpus))
        except BaseException as exc:  # noqa: BLE001 - the candidate's code may raise anything; tell the asker
            from harness.cli import USER_ERRORS

            user_error = isinstance(exc, USER_ERRORS)
            import traceback

            self.failure = {"ok": False, "error": str(exc) if user_error else f"{type(exc).__name__}: {exc}",
                            "user_error": user_error, "traceback": "" if user_error else traceback.format_exc()}
            self.path(".json").write_text(json.dumps(self.failure))
            print(self.failure["traceback"], flush=True)
            self.built.set()
            time.sleep(1.0)  # let waiting asks read the failure
            deadline = time.monotonic() + 5
            while self.busy and time.monotonic() < deadline:
                time.sleep(0.05)
            self.stopping.set()
            return
        finally:
            self.last_used = time.monotonic()
        print(f"ready in {time.perf_counter() - started:.1f} s", flush=True)
        self.built.set()

    def accept_loop(self) -> None:
        assert self.listener is not None
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.busy_lock:
                self.busy += 1
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()

    def handle(self, connection: socket.socket) -> None:
        try:
            with connection:
                request_ = read_line(connection)
                send_line(connection, self.reply(request_))
        except (OSError, ValueError, ConnectionError):
            pass  # the asker went away (Ctrl-C) or sent garbage
        finally:
            self.last_used = time.monotonic()
            with self.busy_lock:
                self.busy -= 1

    def reply(self, request_: dict) -> dict:
        op = request_.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "key": self.key, "ready": self.built.is_set() and not self.failure,
                    "idle_minutes": self.idle_s / 60}
        if op == "stop":
            threading.Timer(0.05, self.request_stop).start()  # after this reply is sent
            return {"ok": True, "pid": os.getpid()}
        if op != "ask":
            return {"ok": False, "error": f"unknown op {op!r}"}
        if request_.get("key") != self.key:
            return {"ok": False, "error": "this warm process serves another pipeline, config or source"}
        self.built.wait()
        if self.failure:
            return self.failure
        with self.lock:
            try:
                answer = self.pipeline.answer(str(request_.get("question", "")))
                return {"ok": True, "answer": answer_to_json(answer)}
            except Exception as exc:  # noqa: BLE001 - report it as a cold ask would, and stay up
                import traceback

                return {"ok": False, "error": f"the pipeline raised {type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()}

    def request_stop(self) -> None:
        """Exit: at once while still building (nothing to finish), else once the main loop sees it."""
        self.stopping.set()
        if not self.built.is_set():
            self.cleanup()
            os._exit(0)

    def cleanup(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.close()
        if self.owns_socket():
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
        if read_pid(self.path(".pid")) == os.getpid():
            with contextlib.suppress(OSError):
                self.path(".pid").unlink()
        print(f"warm ragkata process {os.getpid()} exits", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the warm process behind `ragkata ask` (started by it)")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--idle-minutes", type=float, default=IDLE_MINUTES)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # `--pipeline exercise` imports from the asker's folder, as ask does
    config = Config(**json.loads(args.config_json))
    server = WarmServer(args.socket, args.key, args.pipeline, args.corpus, config, args.idle_minutes)
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
