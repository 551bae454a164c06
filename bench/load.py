"""Load the HTTP service: start `ragkata serve` on a free loopback port, then send a fixed number of requests
to /api/ask and /api/search at 1, 4 and 16 concurrent clients. Prints JSON: per endpoint and level, the
throughput, p50 and p95 latency, errors, the server's peak RSS and its query-batching counts (from /healthz):
encode calls per batch, and query-vector cache lookups per batch.

--uncached makes every question distinct (a per-run nonce and the request's number appended), so no query
vector is found in any cache and every request encodes; --compare-batching runs the whole load twice, first
against `ragkata serve --no-query-batching` (each query encoded alone), then with batching, and reports both.

Usage: python bench/load.py [--pipeline exercise] [--requests 200] [--levels 1,4,16] [--corpus corpus]
       python bench/load.py --endpoints /api/search --uncached --compare-batching
Left out on purpose: any host but 127.0.0.1, open-ended soak tests (every level is bounded in count and
in time), and pass/fail thresholds; these machines are shared and noisy, so compare runs, not numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # never anything else
FALLBACK_QUESTIONS = ["How long until objects move to cold-vault?", "What does error KOS-4032 mean?",
                      "How many lifecycle rules can one bucket have?", "Can I get a refund on an annual plan?"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def questions_from(golden: Path) -> list[str]:
    if not golden.is_file():
        return FALLBACK_QUESTIONS
    lines = [json.loads(line) for line in golden.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [line["question"] for line in lines] or FALLBACK_QUESTIONS


def start_server(args: argparse.Namespace, port: int, log, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "harness.cli", "serve", "--host", HOST, "--port", str(port),
               "--pipeline", args.pipeline, "--corpus", str(args.corpus), "--golden", str(args.golden), *extra]
    for pair in args.config:
        command += ["--config", pair]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(base: str, server: subprocess.Popen, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ragkata serve exited with status {server.returncode} before /healthz answered")
        try:
            return httpx.get(base + "/healthz", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.25)
    raise RuntimeError(f"/healthz did not answer within {timeout_s:g} s; raise --startup-timeout")


def run_level(base: str, endpoint: str, bodies: list[dict], clients: int, max_seconds: float) -> dict:
    """Send len(bodies) requests from `clients` threads; stop issuing new ones after max_seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    cursor = iter(range(len(bodies)))
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=max(30.0, max_seconds)) as client:
            while time.monotonic() < deadline:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    response = client.post(endpoint, json=bodies[index])
                    failed = None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    failed = f"{type(exc).__name__}: {exc}"
                took = (time.perf_counter() - started) * 1000
                with lock:
                    (errors.append(failed) if failed else latencies.append(took))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    done = len(latencies) + len(errors)
    return {
        "endpoint": endpoint, "clients": clients, "requests": len(bodies), "completed": done,
        "errors": len(errors), "first_error": errors[0] if errors else None, "seconds": round(seconds, 3),
        "throughput_rps": round(len(latencies) / seconds, 1) if seconds else None,
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        "stopped_by_time_limit": done < len(bodies),
    }


def bodies_for(questions: list[str], endpoint: str, clients: int, count: int, uncached: bool) -> list[dict]:
    """count request bodies; with uncached, each question made unique to this run, endpoint and level."""
    if not uncached:
        return [{"question": questions[i % len(questions)]} for i in range(count)]
    nonce = uuid.uuid4().hex[:8]
    return [{"question": f"{questions[i % len(questions)]} (load {nonce} {endpoint[5:]} x{clients} #{i})"}
            for i in range(count)]


def load_server(args: argparse.Namespace, questions: list[str], levels: list[int], label: str,
                extra: list[str]) -> dict:
    """Start one server (with extra serve arguments), run every endpoint and level against it, stop it."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        server = start_server(args, port, log, extra)
        try:
            started = time.perf_counter()
            health = wait_healthy(base, server, args.startup_timeout)
            startup = time.perf_counter() - started
            started = time.perf_counter()  # one uncached search first: a lazily loaded model loads now, not in level 1
            httpx.post(base + "/api/search", json={"question": f"warm-up {uuid.uuid4().hex}"}, timeout=args.startup_timeout)
            report = {"label": label, "serve_args": extra, "startup_seconds": round(startup, 2),
                      "warmup_seconds": round(time.perf_counter() - started, 2),
                      "docs": health["docs"], "chunks": health.get("chunks"), "results": []}
            for endpoint in args.endpoints:  # both take the question text as "question"
                for clients in levels:
                    bodies = bodies_for(questions, endpoint, clients, args.requests, args.uncached)
                    before = httpx.get(base + "/healthz", timeout=10).json()
                    client_cpu = time.process_time()
                    result = run_level(base, endpoint, bodies, clients, args.max_seconds)
                    client_cpu = time.process_time() - client_cpu
                    health = httpx.get(base + "/healthz", timeout=10).json()
                    result["peak_rss_mb"] = health["peak_rss_mb"]
                    result["encode_batches"] = batching_delta(before.get("query_batching"), health.get("query_batching"))
                    result["lookup_batches"] = batching_delta(before.get("query_lookups"), health.get("query_lookups"),
                                                              "lookups", "lookup_batches")
                    result.update(cpu_cost(before, health, client_cpu, result["completed"]))
                    report["results"].append(result)
                    print(f"[{label}] {endpoint} x{clients}: {result['throughput_rps']} req/s, p50 {result['p50_ms']} ms, "
                          f"p95 {result['p95_ms']} ms, {result['errors']} errors"
                          + (f", server {result.get('server_cpu_ms_per_request')} + client "
                             f"{result.get('client_cpu_ms_per_request')} CPU ms/request")
                          + (f", encodes {result['encode_batches']}" if result["encode_batches"] else "")
                          + (f", cache lookups {result['lookup_batches']}" if result["lookup_batches"] else ""),
                          file=sys.stderr)
            report["peak_rss_mb"] = max(r["peak_rss_mb"] for r in report["results"])
        except Exception:
            log.seek(0)
            print("server log (last lines):\n" + "".join(log.readlines()[-30:]), file=sys.stderr)
            raise
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return report


def cpu_cost(before: dict, after: dict, client_cpu: float, requests: int) -> dict:
    """CPU milliseconds per request, the server's and this client's: unlike req/s, these barely move when other
    processes share the machine. cpu_bound_rps estimates req/s on this many idle cores, were CPU the only limit."""
    if not requests or before.get("cpu_seconds") is None:
        return {}
    server_ms = (after["cpu_seconds"] - before["cpu_seconds"]) * 1000 / requests
    client_ms = client_cpu * 1000 / requests
    cores = os.cpu_count() or 1
    return {"server_cpu_ms_per_request": round(server_ms, 2), "client_cpu_ms_per_request": round(client_ms, 2),
            f"cpu_bound_rps_on_{cores}_idle_cores": round(cores * 1000 / (server_ms + client_ms), 1)}


def batching_delta(before: list[dict] | None, after: list[dict] | None, calls: str = "requests",
                   made: str = "batches") -> dict | None:
    """Requests and batches during one level, summed over the server's batchers: its encoders (query_batching),
    or with calls="lookups", made="lookup_batches" its query-vector caches (query_lookups)."""
    if not after:
        return None
    total = lambda stats, name: sum(s.get(name, 0) for s in stats or [])  # noqa: E731
    requests = total(after, calls) - total(before, calls)
    batches = total(after, made) - total(before, made)
    return {"requests": requests, "batches": batches, "mean_batch": round(requests / batches, 2) if batches else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="exercise", help="package whose pipeline.py has build_pipeline()")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--golden", type=Path, default=ROOT / "golden_set" / "dev.jsonl", help="questions to send (and to serve)")
    parser.add_argument("--config", action="append", default=[], help="name=value passed to ragkata serve; repeatable")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint and level")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level, comma-separated")
    parser.add_argument("--endpoints", default="/api/search,/api/ask", help="comma-separated, in order")
    parser.add_argument("--uncached", action="store_true", help="make every question distinct, so each one encodes")
    parser.add_argument("--compare-batching", action="store_true", help="run once with --no-query-batching, then "
                        "with batching, and report both")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time limit per endpoint and level")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for /healthz")
    args = parser.parse_args()
    if not args.golden.is_file():
        args.golden = ROOT / "tests" / "fixtures" / "golden.jsonl"
    levels = [int(n) for n in args.levels.split(",") if n.strip()]
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if args.requests < 1 or not levels or min(levels) < 1 or max(levels) > 64:
        parser.error("--requests must be positive and --levels between 1 and 64 clients, e.g. --levels 1,4,16")
    if not set(args.endpoints) <= {"/api/search", "/api/ask"}:
        parser.error("--endpoints takes /api/search and /api/ask")

    questions = questions_from(args.golden)
    runs = [("no batching", ["--no-query-batching"]), ("batching", [])] if args.compare_batching else [("batching", [])]
    report = {"pipeline": args.pipeline, "corpus": str(args.corpus), "config": args.config, "uncached": args.uncached,
              "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(),
              "servers": [load_server(args, questions, levels, label, extra) for label, extra in runs]}
    report["peak_rss_mb"] = max(server["peak_rss_mb"] for server in report["servers"])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
