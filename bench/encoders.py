"""Each embedding backend beside fp32, on this machine: speed, parity, and what it does to the starter's dev metrics.

Usage: python bench/encoders.py [--backends bf16] [--rate-sample 256] [--rounds 3] [--no-metrics]
For every backend this machine can run (exercise.embedding.BACKENDS; GPUs only when torch reports one):
- chunks/s: median of --rounds rounds; each round embeds the same --rate-sample starter chunks with fp32,
  then with the backend, so both see the same machine load; the ratio is per round, then its median;
- query encode p50 (ms): 50 dev questions, one at a time, after a warm-up;
- min cosine to fp32 over every starter chunk (the bar is 0.99; the worst chunk is named);
- the starter's dev metrics with that backend minus with fp32 (the bar is +-0.01 on each).
Fresh temporary cache folders; the real model. Takes about 10 minutes on two cores.
Left out on purpose: the reference pipeline's metrics (run `ragkata-grader` with --config embedding_backend=...).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from exercise.chunking import FixedSizeChunker  # noqa: E402
from exercise.config import Config  # noqa: E402
from exercise.embedding import BACKENDS, EmbeddingCache, Embedder, cpu_has_bf16, pick_backend  # noqa: E402
from harness.corpus import load_corpus  # noqa: E402
from harness.golden import read_golden  # noqa: E402

GOLDEN = ROOT / "golden_set" / "dev.jsonl"
METRICS = ("evidence_recall@5", "evidence_recall@10", "doc_recall@5", "mrr@10", "ndcg@10", "citation_precision",
           "fact_recall", "answer_f1")


def available() -> list[str]:
    import torch

    gpus = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    return [name for name in BACKENDS if name != "fp32" and gpus.get(name, True)]


def rate(encoder: Embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def query_p50_ms(encoder: Embedder, questions: list[str]) -> float:
    encoder.encode(questions[:2])  # warm-up
    times = []
    for question in questions:
        started = time.perf_counter()
        encoder.encode([question])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def dev_metrics(backend: str, cache_dir: Path) -> dict[str, float]:
    """The starter's dev metrics with this backend (chunk vectors already in cache_dir)."""
    from harness.runner import start_run

    config = Config(embedding_backend=backend, cache_dir=str(cache_dir))
    run = start_run(GOLDEN, ROOT / "corpus", config)
    for _ in run.questions():
        pass
    summary = run.finish()
    assert summary.config["embedding_backend"] == backend
    return dict(summary.summary.metrics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="*", help="backends to measure against fp32 (default: all available)")
    parser.add_argument("--rate-sample", type=int, default=256, help="chunks embedded per speed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-metrics", action="store_true", help="skip the dev-set eval per backend")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, "
          f"AMX tiles {torch.cpu._is_amx_tile_supported()} (/proc/cpuinfo bf16: {cpu_has_bf16()}); auto picks {pick_backend()}",
          flush=True)
    config = Config()
    chunker = FixedSizeChunker(config.chunk_size, config.chunk_overlap)
    chunks = [chunk for document in load_corpus(ROOT / "corpus") for chunk in chunker.chunk(document)]
    texts = [chunk.text for chunk in chunks]
    questions = [question.question for question in read_golden(GOLDEN)][:50]
    sample = texts[:: max(1, len(texts) // args.rate_sample)][: args.rate_sample]
    fp32 = Embedder(config.model, backend="fp32")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ragkata-encoders-") as tmp:
        os.environ["RAGKATA_RUNS_DIR"] = str(Path(tmp) / "runs")
        cache = EmbeddingCache(Path(tmp) / "cache")
        started = time.perf_counter()
        reference, _ = cache.vectors_for(texts, fp32)
        print(f"fp32: {len(texts)} starter chunks embedded in {time.perf_counter() - started:.0f} s "
              f"(model load included)", flush=True)
        base = {} if args.no_metrics else dev_metrics("fp32", Path(tmp) / "cache")
        for backend in args.backends if args.backends is not None else available():
            encoder = Embedder(config.model, backend=backend)
            encoder.encode(["load the model"])
            pairs = [(rate(fp32, sample), rate(encoder, sample)) for _ in range(args.rounds)]
            vectors, _ = cache.vectors_for(texts, encoder)
            cosines = np.sum(vectors * reference, axis=1)
            worst = int(np.argmin(cosines))
            row = {"backend": backend,
                   "fp32 chunks/s": statistics.median(p[0] for p in pairs),
                   "chunks/s": statistics.median(p[1] for p in pairs),
                   "speed-up": statistics.median(p[1] / p[0] for p in pairs),
                   "fp32 query p50 ms": query_p50_ms(fp32, questions),
                   "query p50 ms": query_p50_ms(encoder, questions),
                   "min cosine": float(cosines[worst]), "worst chunk": chunks[worst].chunk_id}
            if base:
                metrics = dev_metrics(backend, Path(tmp) / "cache")
                row["metric deltas"] = {name: round(metrics[name] - base[name], 4) for name in METRICS}
                worst_metric = max(base, key=lambda name: abs(metrics[name] - base[name]))
                row["max |delta|"] = abs(metrics[worst_metric] - base[worst_metric])
                row["worst metric"] = worst_metric
            rows.append(row)
            print(" ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                           for key, value in row.items()), flush=True)
    for row in rows:
        ok = row["min cosine"] >= 0.99 and row.get("max |delta|", 0.0) <= 0.01
        print(f"{row['backend']}: {row['chunks/s']:.1f} chunks/s vs fp32 {row['fp32 chunks/s']:.1f} "
              f"(x{row['speed-up']:.2f}, median of {args.rounds}); query p50 {row['query p50 ms']:.1f} ms vs fp32 "
              f"{row['fp32 query p50 ms']:.1f} ms; min cosine {row['min cosine']:.4f}; max |dev metric delta| "
              f"{row.get('max |delta|', float('nan')):.4f} ({row.get('worst metric', '-')}); parity {'ok' if ok else 'FAILED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
