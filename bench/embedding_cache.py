"""What the per-text embedding cache saves: the starter's chunks embedded cold, then with another chunk_size,
then again with everything cached. Real model (exercise.embedding.Embedder), a fresh cache folder.

Usage: python bench/embedding_cache.py [--chunk-size 1000] [--cache-dir DIR]
Prints one line per build: chunks, distinct texts encoded, seconds, and texts per second.
Left out on purpose: repeats and medians (the cold build alone takes minutes on two cores), and the
reference pipeline's units (they go through the same EmbeddingCache.load_or_build).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exercise.chunking import FixedSizeChunker  # noqa: E402
from exercise.config import Config  # noqa: E402
from exercise.embedding import EmbeddingCache, Embedder  # noqa: E402
from harness.corpus import load_corpus  # noqa: E402


def build(label: str, cache_dir: Path, encoder: Embedder, documents, size: int, overlap: int) -> dict:
    chunker = FixedSizeChunker(size, overlap)
    chunks = [chunk for document in documents for chunk in chunker.chunk(document)]
    cache = EmbeddingCache(cache_dir)
    started = time.perf_counter()
    cache.load_or_build(chunks, encoder)
    seconds = time.perf_counter() - started
    stats = cache.last_build
    rate = f"{stats['encoded'] / seconds:.1f} texts/s" if stats["encoded"] else "-"
    print(f"{label:<34} chunk_size={size:<5} chunks={len(chunks):<5} encoded={stats['encoded']:<5} "
          f"cached={str(stats['cached']):<5} {seconds:8.2f} s  {rate}", flush=True)
    return {**stats, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-size", type=int, default=1000, help="the second build's chunk_size")
    parser.add_argument("--cache-dir", help="a cache folder to use (default: a fresh temporary one)")
    args = parser.parse_args()
    config = Config()
    documents = load_corpus(ROOT / "corpus")
    encoder = Embedder(config.model)
    started = time.perf_counter()
    encoder.encode(["load the model"])
    print(f"model loaded in {time.perf_counter() - started:.1f} s; {len(documents)} documents", flush=True)
    with tempfile.TemporaryDirectory(prefix="ragkata-embedding-cache-") as tmp:
        cache_dir = Path(args.cache_dir or tmp)
        size, overlap = config.chunk_size, config.chunk_overlap
        build("starter's chunks, first build", cache_dir, encoder, documents, size, overlap)
        build("chunk_size changed", cache_dir, encoder, documents, args.chunk_size, overlap)
        build("starter's chunks again", cache_dir, encoder, documents, size, overlap)
        build("changed chunk_size again", cache_dir, encoder, documents, args.chunk_size, overlap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
