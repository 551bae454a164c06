"""Time `load_corpus('corpus')` with libyaml's C loader and with PyYAML's pure-Python one: median of 5 each.

Run: python bench/corpus_load.py [--corpus DIR] [--repeat N]. Each loader gets a warm-up load first (file
cache, imports); then the loads alternate between the two, so both see the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from harness import corpus as corpus_module  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT / "corpus"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    loaders = {"CSafeLoader (libyaml)": getattr(yaml, "CSafeLoader", None), "SafeLoader (pure Python)": yaml.SafeLoader}
    loaders = {name: loader for name, loader in loaders.items() if loader is not None}
    seconds: dict[str, list[float]] = {name: [] for name in loaders}
    count = 0
    for name, loader in loaders.items():
        corpus_module.YAML_LOADER = loader
        corpus_module.load_corpus(args.corpus)  # warm-up
    for _ in range(args.repeat):
        for name, loader in loaders.items():
            corpus_module.YAML_LOADER = loader
            started = time.perf_counter()
            count = len(corpus_module.load_corpus(args.corpus))
            seconds[name].append(time.perf_counter() - started)
    print(f"load_corpus({args.corpus!r}): {count} documents")
    for name, runs in seconds.items():
        print(f"{name:26} median of {args.repeat}: {statistics.median(runs):.3f} s "
              f"(runs: {', '.join(f'{s:.3f}' for s in runs)})")


if __name__ == "__main__":
    main()
