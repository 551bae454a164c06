"""LLM-judged scores for a run (`ragkata eval --judge`): two ragas 0.4.3 metrics over an OpenAI-compatible endpoint.

Each answerable question that got an answer is judged on its own, with ragas.metrics.collections:
- faithfulness: ragas's Faithfulness. The judge splits the answer into statements and checks each one
  against the context chunks the generator was given; the score is the share it finds supported.
- answer_correctness: ragas's AnswerCorrectness with weights [1.0, 0.0], i.e. its factuality part only:
  the F1 of the answer's statements against the golden answer's, as the judge classifies them (TP/FP/FN).
  ragas's default adds 0.25 x embedding similarity, which needs an embeddings model; that part is left out.
  ragas gives 1.0 when the judge finds no statement in the answer or in the golden answer.

What a run folder gets:
- judge.jsonl, one line per judged question, appended the moment it is judged. A metric that raised or
  returned NaN is null, with the reason under "errors" (a file of its own: samples.jsonl holds Sample records):
  {"id": "fx-01", "scores": {"faithfulness": 1.0, "answer_correctness": null},
   "errors": {"answer_correctness": "APITimeoutError: Request timed out."}}
- summary.json: "judge" holds aggregate() of those lines ({"faithfulness": 0.75, "faithfulness.nan_count": 1.0,
  ...}) and "judge_endpoint" the base URL and model. The API key (from Config.llm_api_key_env) is never written.

The judge is asked for JSON that fits each reply's schema, response_format {"type": "json_object", "schema": ...}
(instructor's JSON_SCHEMA mode). llama.cpp turns it into a grammar; with a plain json_object a small model
runs for minutes per call. Left out on purpose: unanswerable questions and questions whose pipeline raised,
the judge's token cost, and retrying a NaN. A resumed run judges only the questions judge.jsonl lacks.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # set before ragas loads: it must send no usage events

import instructor  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from ragas.llms.base import InstructorLLM, InstructorModelArgs  # noqa: E402
from ragas.metrics.collections import AnswerCorrectness, Faithfulness  # noqa: E402

from exercise.config import Config  # noqa: E402
from harness.golden import GoldenQuestion  # noqa: E402
from harness.metrics import means_counting_nan  # noqa: E402
from harness.records import Sample  # noqa: E402

JUDGE_FILE = "judge.jsonl"
NO_KEY = "not-needed"  # what a local server gets when the key variable is unset
ERROR_CHARS = 300  # an error longer than this (a pydantic dump, say) is cut


@dataclass(frozen=True)
class JudgeEndpoint:
    """Where the judge runs. Only base_url and model are ever written; the key stays in memory."""

    base_url: str
    model: str
    api_key: str = field(default=NO_KEY, repr=False)
    timeout_s: float = 60.0  # per request; a metric makes 2 (faithfulness) or 3 (answer_correctness)
    max_tokens: int = 1024  # per reply; ragas's own default
    json_schema: bool = True  # False sends a plain json_object, for endpoints that refuse a schema there

    def to_json(self) -> dict[str, str]:
        return {"base_url": self.base_url, "model": self.model}


def endpoint_from_config(config: Config, base_url: str | None = None, model: str | None = None,
                         environ: Mapping[str, str] | None = None) -> JudgeEndpoint:
    """The generator's endpoint, model, key and time-out from Config, with base_url and model overridable."""
    environ = os.environ if environ is None else environ
    return JudgeEndpoint(base_url or config.llm_base_url, model or config.llm_model,
                         environ.get(config.llm_api_key_env) or NO_KEY, config.llm_timeout_s)


@dataclass(frozen=True)
class JudgeLine:
    """One judge.jsonl line: a question's scores (NaN when the metric gave none) and why each NaN."""

    id: str
    scores: Mapping[str, float]
    errors: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "scores": {k: None if math.isnan(v) else v for k, v in self.scores.items()},
                "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JudgeLine:
        scores = {str(k): math.nan if v is None else float(v) for k, v in data["scores"].items()}
        return cls(str(data["id"]), scores, {str(k): str(v) for k, v in data.get("errors", {}).items()})


def aggregate(lines: Sequence[JudgeLine]) -> dict[str, float]:
    """Mean of each metric over the lines, NaNs left out and counted under "<metric>.nan_count".

    Scores [1.0, NaN, 0.5] give {"m": 0.75, "m.nan_count": 1.0}. A metric whose every value is NaN
    has only its count. No lines give {}.
    """
    per_metric: dict[str, list[float]] = {}
    for line in lines:
        for name, value in line.scores.items():
            per_metric.setdefault(name, []).append(value)
    return means_counting_nan(per_metric)


def describe(aggregated: Mapping[str, float]) -> str:
    """One line for the terminal, e.g. "judge: faithfulness 0.750 (1 NaN), answer_correctness 1.000"."""
    parts = []
    for name in dict.fromkeys(k.removesuffix(".nan_count") for k in aggregated):
        nan = int(aggregated.get(f"{name}.nan_count", 0))
        mean = f"{aggregated[name]:.3f}" if name in aggregated else "no score"
        parts.append(f"{name} {mean}" + (f" ({nan} NaN)" if nan else ""))
    return "judge: " + (", ".join(parts) if parts else "no question to judge")


def read_judge_lines(path: Path) -> list[JudgeLine]:
    """The complete lines of a judge.jsonl; a torn last line (from a kill mid-write) is dropped."""
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(JudgeLine.from_json(json.loads(raw)))
        except (json.JSONDecodeError, KeyError):
            break
    return lines


def make_metrics(endpoint: JudgeEndpoint, client: AsyncOpenAI) -> dict[str, Any]:
    """The ragas metrics, by name, sharing one instructor-patched client."""
    mode = instructor.Mode.JSON_SCHEMA if endpoint.json_schema else instructor.Mode.JSON
    llm = InstructorLLM(client=instructor.from_openai(client, mode=mode), model=endpoint.model, provider="openai",
                        model_args=InstructorModelArgs(max_tokens=endpoint.max_tokens))
    return {"faithfulness": Faithfulness(llm=llm), "answer_correctness": AnswerCorrectness(llm=llm, weights=[1.0, 0.0])}


def metric_inputs(sample: Sample, golden: GoldenQuestion) -> dict[str, dict[str, Any]]:
    """What each metric reads: the question, the answer, and the context texts or the golden answer."""
    asked = {"user_input": sample.question, "response": sample.answer}
    return {"faithfulness": {**asked, "retrieved_contexts": [c.text for c in sample.context_chunks]},
            "answer_correctness": {**asked, "reference": golden.answer}}


async def judge_sample(metrics: Mapping[str, Any], sample: Sample, golden: GoldenQuestion,
                       secret: str = "") -> JudgeLine:
    """Score one sample with every metric; a metric that raises or returns NaN gives NaN and its reason."""
    inputs = metric_inputs(sample, golden)
    scores: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, metric in metrics.items():
        try:
            value = float((await metric.ascore(**inputs[name])).value)
            reason = "ragas returned NaN: the judge's reply left nothing to score (e.g. no statements)"
        except Exception as exc:  # a judge reply may break anything; count it and go on
            value, reason = math.nan, f"{type(exc).__name__}: {exc}"
        scores[name] = value
        if math.isnan(value):
            text = " ".join(reason.split())
            errors[name] = (text.replace(secret, "***") if secret else text)[:ERROR_CHARS]
    return JudgeLine(sample.id, scores, errors)


@dataclass
class Judging:
    """A run's judging in progress. Iterate `lines()` to judge and append one question at a time."""

    endpoint: JudgeEndpoint
    path: Path  # the run's judge.jsonl
    todo: list[tuple[Sample, GoldenQuestion]]

    def lines(self) -> Iterator[JudgeLine]:
        """Judge each question still to do, appending its line to judge.jsonl before yielding it."""
        loop = asyncio.new_event_loop()
        client = AsyncOpenAI(base_url=self.endpoint.base_url, api_key=self.endpoint.api_key,
                             timeout=self.endpoint.timeout_s, max_retries=1)
        metrics = make_metrics(self.endpoint, client)
        secret = "" if self.endpoint.api_key == NO_KEY else self.endpoint.api_key
        try:
            with self.path.open("a", encoding="utf-8") as out:
                for sample, golden in self.todo:
                    line = loop.run_until_complete(judge_sample(metrics, sample, golden, secret))
                    out.write(json.dumps(line.to_json(), ensure_ascii=False) + "\n")
                    out.flush()
                    yield line
        finally:
            loop.run_until_complete(client.close())
            loop.close()

    def summary(self) -> dict[str, Any]:
        """summary.json's judge sections, computed from the lines on disk."""
        return {"judge": aggregate(read_judge_lines(self.path)), "judge_endpoint": self.endpoint.to_json()}


def start_judging(directory: Path, samples: Sequence[Sample], golden_by_id: Mapping[str, GoldenQuestion],
                  endpoint: JudgeEndpoint) -> Judging:
    """Plan the judging of a run folder: its answerable, error-free samples that judge.jsonl lacks.

    A sample id missing from golden_by_id raises ValueError.
    """
    path = Path(directory) / JUDGE_FILE
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):  # a torn last line: drop it so appended lines start cleanly
            path.write_bytes(data[: data.rfind(b"\n") + 1])
    done = {line.id for line in read_judge_lines(path)}
    todo = []
    for sample in samples:
        golden = golden_by_id.get(sample.id)
        if golden is None:
            raise ValueError(f"sample {sample.id!r} has no golden question; pass the golden set the run used")
        if sample.error is None and golden.answerable and sample.id not in done:
            todo.append((sample, golden))
    return Judging(endpoint, path, todo)
