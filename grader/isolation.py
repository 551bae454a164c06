"""Where a candidate's code runs: in a bubblewrap or container jail, or, only when asked, unconfined.

A Jail holds a private copy of the candidate's repository and a read-only copy of the interviewer's
trusted code (harness/, exercise/ and the worker), and turns a command into one that runs inside:
  bwrap   new PID, network, IPC and UTS namespaces; the Python environment and system folders
          read-only; the copy read-write at /candidate; a private /tmp; no view of the interviewer's
          repository, the --out folder or the home folder; everything dies with the grader.
  docker  the same layout in the project's image (`docker build -t ragkata .`), with --network none;
          Docker or Podman.
  none    the candidate's own folder, unconfined; the scorecard says so on its first line.
The environment inside holds only PATH, locale, the RAGKATA_* variables that set a Config field (as
`ragkata eval` reads them) and the variables the caller passes, never the interviewer's others (which
may hold keys). An endpoint's key reaches the jail through the environment,
never on a command line. The one address a jailed process may reach is the interviewer's language-model
endpoint (--llm-base-url): a relay in this process joins a Unix socket in the jail to it, and the worker
listens for it on the jail's own loopback (Route), so TLS and the host name pass through unchanged.
Left out on purpose: time and memory limits (sandbox.py), and macOS sandboxing (use docker or none).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit

INTERVIEWER_ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("auto", "bwrap", "docker", "none")
INSIDE_CANDIDATE = "/candidate"  # the private copy, inside the jail
INSIDE_CODE = "/ragkata/code"  # the interviewer's trusted packages, read-only
INSIDE_CORPUS = "/ragkata/corpus"  # the corpus, read-only
INSIDE_RUN = "/ragkata/run"  # the relay's socket
FORWARD_VARIABLE = "RAGKATA_GRADER_FORWARD"  # "PORT=SOCKET": the worker listens on 127.0.0.1:PORT and joins SOCKET
DEFAULT_IMAGE = "ragkata"
# Not copied into the jail: version control (read by the grader from a sanitized clone), environments,
# and run records (read by the grader from the candidate's own folder).
NOT_COPIED = (".git", ".venv", "venv", "env", "node_modules", "__pycache__", ".pytest_cache", "runs", ".mypy_cache")
TRUSTED = ("harness", "exercise", "grader/__init__.py", "grader/worker.py", "grader/sandbox.py", "grader/isolation.py",
           "grader/capped_log.py")
KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/sys")
PROTECTS = {
    "bwrap": "the candidate's code ran in a bubblewrap jail: private copy of its repository, no view of this "
             "repository, --out or the home folder, no network, and no process outlived the grade",
    "docker": "the candidate's code ran in a container of the project's image with no network: private copy of its "
              "repository, no view of this repository, --out or the home folder",
    "none": "UNISOLATED: the candidate's code ran unconfined (--isolation none); it could read the holdout, write "
            "anywhere this user can and leave processes behind: trust these numbers only for code you have read",
}


class IsolationError(ValueError):
    """The requested isolation is not available here; the message says how to fix it."""


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot jail a process here, or None when it can (a real start is tried)."""
    if sys.platform != "linux":
        return "bubblewrap runs on Linux only"
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed"
    try:
        probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--proc", "/proc",
                                "--dev", "/dev", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap could not start ({exc})"
    if probe.returncode != 0:
        return f"bwrap could not create namespaces ({probe.stderr.strip()[:200]}); unprivileged user namespaces may be off"
    return None


def container_engine() -> str | None:
    """docker or podman, whichever answers; None when neither does."""
    for engine in ("docker", "podman"):
        if shutil.which(engine):
            try:
                if subprocess.run([engine, "info"], capture_output=True, timeout=20).returncode == 0:
                    return engine
            except (OSError, subprocess.SubprocessError):
                continue
    return None


def choose(requested: str, image: str = DEFAULT_IMAGE) -> str:
    """The isolation level to use for `--isolation requested`; IsolationError naming the fix when none fits."""
    if requested not in LEVELS:
        raise IsolationError(f"--isolation {requested!r}: choose one of {', '.join(LEVELS)}")
    if requested == "none":
        return "none"
    problem = bwrap_problem() if requested in ("auto", "bwrap") else None
    if requested in ("auto", "bwrap") and problem is None:
        return "bwrap"
    if requested in ("auto", "docker"):
        engine = container_engine()
        if engine and subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode == 0:
            return "docker"
        problem = (f"{problem}; " if problem else "") + (f"{engine} has no image {image!r} (build it: {engine} build -t "
                                                         f"{image} .)" if engine else "neither Docker nor Podman answers")
    raise IsolationError(
        f"cannot isolate the candidate's code: {problem}. Install bubblewrap (Debian, Ubuntu: sudo apt install "
        "bubblewrap; Fedora: sudo dnf install bubblewrap), or pass --isolation docker with Docker or Podman and the "
        "project's image, or --isolation none to run it unconfined (the scorecard then says so on its first line)")


@dataclass(frozen=True)
class Route:
    """The interviewer's endpoint as a jailed process reaches it: the same URL, its host resolving to the
    jail's loopback, on a port a process there may listen on (a port below 1024 becomes 40000 + port
    unless the grader runs as root)."""

    host: str  # the real host and port, reached from this process
    port: int
    inside_url: str  # the base URL handed to the jailed pipeline
    inside_port: int
    name: str | None  # a host name to resolve to 127.0.0.1 inside; None for an address or localhost

    @classmethod
    def of(cls, base_url: str) -> Route:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        inside_port = port if port >= 1024 or os.geteuid() == 0 else 40000 + port
        try:
            ipaddress.ip_address(host)
            name, inside_host = None, "127.0.0.1"
        except ValueError:
            name, inside_host = (None, "127.0.0.1") if host == "localhost" else (host, host)
        netloc = f"{inside_host}:{inside_port}"
        return cls(host, port, parts._replace(netloc=netloc).geturl(), inside_port, name)


def relay(listener: socket.socket, connect: Callable[[], socket.socket]) -> threading.Thread:
    """Accept connections on `listener` until it closes, joining each to a new `connect()`, bytes both ways."""

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def join(client: socket.socket) -> None:
        try:
            upstream = connect()
        except OSError:
            client.close()
            return
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        pipe(upstream, client)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=join, args=(client,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def forward_inside(spec: str) -> None:
    """In the jailed worker: listen on 127.0.0.1:PORT and join each connection to the relay's socket."""
    port, _, path = spec.partition("=")
    listener = socket.create_server(("127.0.0.1", int(port)))

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    relay(listener, connect)


def config_variables() -> dict[str, str]:
    """The RAGKATA_* variables of this environment that name a Config field, e.g. RAGKATA_RETRIEVER."""
    from exercise.config import Config  # the interviewer's

    fields = {f"RAGKATA_{f.name.upper()}" for f in dataclasses.fields(Config)}
    return {name: value for name, value in os.environ.items() if name in fields}


@dataclass
class Jail:
    """One candidate's jail for one grade: its private copy, the trusted code, and how to enter it."""

    level: str  # "bwrap", "docker" or "none"
    candidate: Path  # the candidate's own folder
    corpus: Path
    image: str = DEFAULT_IMAGE
    memory_mb: int = 0  # a container's memory limit (a bwrap jail inherits the caller's RLIMIT_AS instead)
    route: Route | None = None  # the endpoint a jailed process may reach
    home: Path | None = None  # the temporary folder holding the copy and the trusted code (None: level none)
    names: list[str] = field(default_factory=list)  # containers started, for kill()
    listener: socket.socket | None = None  # the relay's socket, for the route

    @classmethod
    def create(cls, level: str, candidate: Path, corpus: Path, image: str = DEFAULT_IMAGE, memory_mb: int = 0,
               endpoint_url: str | None = None) -> Jail:
        """A jail for `candidate`; with `endpoint_url`, a route to that one address and no other."""
        jail = cls(level, candidate.resolve(), corpus.resolve(), image, memory_mb)
        if level != "none":
            jail.home = Path(tempfile.mkdtemp(prefix="ragkata-jail-"))
            shutil.copytree(jail.candidate, jail.home / "candidate", symlinks=True,
                            ignore=shutil.ignore_patterns(*NOT_COPIED))
            for part in TRUSTED:
                source, dest = INTERVIEWER_ROOT / part, jail.home / "code" / part
                dest.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(source, dest)
            if endpoint_url:
                jail._open_route(Route.of(endpoint_url))
        return jail

    def _open_route(self, route: Route) -> None:
        assert self.home is not None
        (self.home / "run").mkdir()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.home / "run" / "llm.sock"))
        self.listener.listen(16)
        relay(self.listener, lambda: socket.create_connection((route.host, route.port), timeout=30))
        if route.name:
            (self.home / "hosts").write_text(f"127.0.0.1 localhost {route.name}\n::1 localhost\n")
        self.route = route

    def variables(self) -> dict[str, str]:
        """What a jailed worker's environment gains for the route: the URL to call, and where to listen."""
        if not self.route:
            return {}
        return {"RAGKATA_LLM_BASE_URL": self.route.inside_url,
                FORWARD_VARIABLE: f"{self.route.inside_port}={INSIDE_RUN}/llm.sock"}

    def close(self) -> None:
        """Remove the copy and stop any container left; the bwrap namespaces die with their processes."""
        for name in self.names:
            self.kill(name)
        if self.listener:
            self.listener.close()
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Jail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> str:
        """The candidate's folder as the jailed process sees it."""
        return str(self.candidate) if self.level == "none" else INSIDE_CANDIDATE

    @property
    def corpus_path(self) -> str:
        return str(self.corpus) if self.level == "none" else INSIDE_CORPUS

    @property
    def code_path(self) -> str:
        return str(INTERVIEWER_ROOT) if self.level == "none" else INSIDE_CODE

    def command(self, argv: Sequence[str], variables: Mapping[str, str]) -> tuple[list[str], dict[str, str], Path]:
        """(argv, environment, host working directory) that run `argv` inside the jail, in the candidate's folder.

        argv[0] "python" means the interviewer's interpreter. `variables` are set inside; for level none the
        interviewer's environment is kept as well, as any unconfined process would see it.
        """
        python = sys.executable if self.level != "docker" else "python"
        argv = [python if a == "python" else a for a in argv]
        env = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ} | config_variables()
        env.update({"HOME": "/tmp", "PYTHONPATH": self.code_path, **variables, **self.variables()})
        if self.level == "none":
            return argv, {**os.environ, **env, "HOME": os.environ.get("HOME", "/tmp")}, self.candidate
        assert self.home is not None
        if self.level == "bwrap":
            return self._bwrap(argv), env, self.home
        return self._docker(argv, env), env, self.home

    def _bwrap(self, argv: list[str]) -> list[str]:
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--proc", "/proc", "--dev", "/dev",
                "--tmpfs", "/tmp", "--tmpfs", "/run"]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for prefix in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                              str(Path(sys.executable).resolve().parent.parent)}):
            if not prefix.startswith(SYSTEM_DIRS):
                args += ["--ro-bind", prefix, prefix]
        args += ["--ro-bind", str(self.home / "code"), INSIDE_CODE, "--ro-bind", str(self.corpus), INSIDE_CORPUS,
                 "--bind", str(self.home / "candidate"), INSIDE_CANDIDATE, "--chdir", INSIDE_CANDIDATE]
        if self.route:
            args += ["--bind", str(self.home / "run"), INSIDE_RUN]
        if self.route and self.route.name:
            args += ["--ro-bind", str(self.home / "hosts"), "/etc/hosts"]
        return args + ["--", *argv]

    def _docker(self, argv: list[str], env: Mapping[str, str]) -> list[str]:
        engine = container_engine() or "docker"
        name = f"ragkata-worker-{uuid.uuid4().hex[:12]}"
        self.names.append(name)
        args = [engine, "run", "--rm", "-i", "--name", name, "--network", "none", "--tmpfs", "/tmp", "--entrypoint", argv[0],
                "--pids-limit", "1024", "-v", f"{self.home / 'candidate'}:{INSIDE_CANDIDATE}",
                "-v", f"{self.home / 'code'}:{INSIDE_CODE}:ro", "-v", f"{self.corpus}:{INSIDE_CORPUS}:ro", "-w", INSIDE_CANDIDATE]
        if self.memory_mb:
            args += ["--memory", f"{self.memory_mb}m"]
        if self.route:
            args += ["-v", f"{self.home / 'run'}:{INSIDE_RUN}"]
        if self.route and self.route.name:
            args += ["--add-host", f"{self.route.name}:127.0.0.1"]
        for name_ in env:
            args += ["-e", name_]  # the value comes from this process's environment, never the command line
        return args + [self.image, *argv[1:]]

    def kill(self, name: str | None = None) -> None:
        """Stop a container (the docker client's death does not stop it); no-op for the other levels."""
        if self.level != "docker":
            return
        for each in [name] if name else list(self.names):
            try:
                subprocess.run([container_engine() or "docker", "kill", each], capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError):
                pass
