"""SciFact (BEIR) through `ragkata import beir`: doc_ndcg@10 and doc_recall@100 of the starter (BM25 and dense)
and the reference on the 300 test queries, beside published numbers; and a synthetic 50,000-chunk corpus
indexed and queried (BM25 and dense), with peak RSS and query p50/p95.

Run: python bench/beir.py [--beir DIR] [--only scifact|scale] [--pipelines bm25,dense,reference]
SciFact is read from ../shared/external/scifact beside the repository (--beir to point elsewhere); its
licence (CC BY-NC 2.0) keeps it out of the repository, so the import goes to a temporary folder. The first
dense and reference runs embed every chunk (several minutes on 2 cores); the embedding cache makes reruns
fast. Published numbers, test split, nDCG@10:
- Anserini BM25 flat 0.679 (R@100 0.925): castorini/anserini, docs/regressions/regressions-beir-v1.0.0-scifact.flat.md;
- all-MiniLM-L6-v2 0.645: the MTEB leaderboard's SciFact retrieval score for that model (64.5), as quoted
  in issue 14; not re-read from the leaderboard here. SciFact's SOURCE.md lists the BEIR paper's other baselines.
The scale part times each retriever in a fresh process, so peak RSS is that retriever's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PUBLISHED = {  # (doc_ndcg@10, doc_recall@100) on SciFact test; None where not published alongside
    "Anserini BM25 (flat), published": (0.679, 0.925),
    "all-MiniLM-L6-v2, published": (0.645, None),
}
PIPELINES = {  # name: (--pipeline, config overrides)
    "bm25": ("exercise", ["retriever=bm25"]),
    "dense": ("exercise", ["retriever=dense"]),
    "reference": ("grader.solutions", []),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scifact(source: Path, names: list[str]) -> None:
    from exercise.config import Config
    from harness.beir import import_beir
    from harness.runner import start_run

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        imported = import_beir(source, Path(scratch) / "scifact")
        print(f"imported {imported.documents} documents, {imported.questions['test']} test questions "
              f"in {time.perf_counter() - started:.1f} s", flush=True)
        os.environ["RAGKATA_RUNS_DIR"] = str(Path(scratch) / "runs")
        rows = []
        for name in names:
            module, overrides = PIPELINES[name]
            started = time.perf_counter()
            run = start_run(imported.golden["test"], imported.corpus, Config().with_overrides(overrides), module,
                            timeout_s=600)
            built = time.perf_counter() - started
            for _ in run.questions():
                pass
            summary = run.finish()
            metrics, latency = summary.summary.metrics, summary.summary.latency_ms["search"]
            rows.append((f"{name} ({module} {' '.join(overrides)})".replace(" )", ")"), metrics["doc_ndcg@10"],
                         metrics["doc_recall@100"]))
            print(f"{rows[-1][0]}: doc_ndcg@10 {rows[-1][1]:.3f}, doc_recall@100 {rows[-1][2]:.3f}; "
                  f"{summary.index.chunks} chunks, build {built:.0f} s (cached {summary.index.cached}); "
                  f"search p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms", flush=True)
    print("\n| pipeline | doc_ndcg@10 | doc_recall@100 |\n| --- | ---: | ---: |")
    for label, ndcg, recall in rows + [(k, *v) for k, v in PUBLISHED.items()]:
        print(f"| {label} | {ndcg:.3f} | {'-' if recall is None else f'{recall:.3f}'} |")


# --- scale ------------------------------------------------------------------------------------------------

CHUNKS = 50_000
QUERIES = 200


def synthetic_chunks(n: int, seed: int = 0):
    """n chunks of about 120 words drawn from a Zipf-like vocabulary of 30,000 words, 5 chunks per document."""
    from exercise.contracts import Chunk

    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(30_000)]
    weights = [1 / (i + 1) for i in range(len(vocabulary))]
    words = rng.choices(vocabulary, weights, k=n * 120)
    chunks = []
    for i in range(n):
        text = " ".join(words[i * 120:(i + 1) * 120])
        chunks.append(Chunk(f"doc{i // 5}.md#{i % 5}", f"doc{i // 5}.md", text, 0, len(text)))
    queries = [" ".join(rng.choices(vocabulary[:5000], k=8)) for _ in range(QUERIES)]
    return chunks, queries


def percentiles(ms: list[float]) -> str:
    from harness.metrics import percentile

    return f"p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms"


def scale_one(kind: str) -> dict:
    """Index CHUNKS synthetic chunks with one retriever and time QUERIES queries at k=20 (after 5 warm-up)."""
    chunks, queries = synthetic_chunks(CHUNKS)
    started = time.perf_counter()
    if kind == "starter-bm25":
        from exercise.retrieval import BM25Retriever

        retriever = BM25Retriever()
        retriever.index(chunks)
        search = retriever.search
    elif kind == "reference-bm25":
        from grader.solutions.retrieval import BM25Retriever

        retriever = BM25Retriever()
        retriever.index(chunks)
        search = retriever.search
    else:  # dense: random unit vectors stand in for 50,000 chunk embeddings; queries are really encoded
        import faiss
        import numpy as np

        from exercise.embedding import Embedder

        vectors = np.random.default_rng(0).standard_normal((len(chunks), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index = faiss.IndexFlatIP(384)
        index.add(vectors)
        encoder = Embedder("all-MiniLM-L6-v2", backend="auto")

        def search(query: str, k: int):
            vector = np.asarray(encoder.encode([query]), dtype=np.float32) if kind == "dense" else vectors[:1]
            scores, ids = index.search(vector, k)
            return [(chunks[i], float(s)) for s, i in zip(scores[0], ids[0])]
    build = time.perf_counter() - started
    for query in queries[:5]:
        search(query, 20)
    ms = []
    for query in queries:
        t = time.perf_counter()
        search(query, 20)
        ms.append((time.perf_counter() - t) * 1000)
    from harness.metrics import percentile

    return {"kind": kind, "chunks": len(chunks), "build_s": round(build, 1), "p50_ms": round(percentile(ms, 50), 2),
            "p95_ms": round(percentile(ms, 95), 2), "peak_rss_mb": round(peak_rss_mb())}


def scale(kinds: list[str]) -> None:
    print(f"\n{CHUNKS:,} synthetic chunks (about 120 words each), {QUERIES} queries at k=20, one process per retriever, "
          f"{os.cpu_count()} cores")
    print("| retriever | index build s | query p50 ms | query p95 ms | peak RSS MB |\n| --- | ---: | ---: | ---: | ---: |")
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, "--scale-one", kind], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"| {kind} | failed: {out.stderr.strip().splitlines()[-1:]} |")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {kind} | {row['build_s']} | {row['p50_ms']} | {row['p95_ms']} | {row['peak_rss_mb']} |", flush=True)
    print("dense: random unit vectors in a faiss IndexFlatIP stand in for the 50,000 chunk embeddings (embedding "
          "them at ~18 chunks/s would take about 45 minutes on 2 cores); 'dense' times the real query encode plus the search, "
          "'dense-search' the search alone.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "external" / "scifact")
    parser.add_argument("--only", choices=("scifact", "scale"))
    parser.add_argument("--pipelines", default="bm25,dense,reference")
    parser.add_argument("--scale-kinds", default="starter-bm25,reference-bm25,dense-search,dense")
    parser.add_argument("--scale-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one)))
        return
    if args.only != "scale":
        if not (args.beir / "corpus.jsonl").is_file():
            print(f"SciFact not found at {args.beir}; pass --beir DIR (a BEIR folder)", file=sys.stderr)
        else:
            scifact(args.beir, args.pipelines.split(","))
    if args.only != "scifact":
        scale(args.scale_kinds.split(","))


if __name__ == "__main__":
    main()
