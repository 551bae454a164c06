"""The contract check: every way an object a pipeline returned breaks the shape of exercise.contracts.Answer.

answer_problems lists each problem as "<field>: <problem>", all of them at once, and never raises;
malformed_error joins them into the error text a run records. scoring.score_sample runs it on every
answer, so `ragkata eval` (in-process) and the grader (after records.answer_from_json) apply the
same checks, and a candidate meets them first in eval.

Accepted: an exercise.contracts.Answer, or any object with its fields (a candidate's own Answer, Hit
and Chunk classes; the grader's worker transports such objects field by field too); numpy numbers
and bools wherever a number or a bool is due. A problem: a missing field; `text` not a str;
`abstained` not a bool; `citations` or `context` not a list or tuple of str chunk ids (a plain str is
named as such); a `context` id among no retrieved hit's chunk id; a hit whose score is not a finite
number, or whose chunk has a non-str id, document or text, or offsets that are not ints, are negative,
run backwards, or (for a document of the corpus) end past its text; a latency that is not a finite
number; a usage whose counts are not ints or whose cost is not a finite number.
Left out on purpose: quality, which the metrics measure (a citation outside the context, an empty
answer, a chunk of a document the corpus does not hold: it covers nothing), the empty hits that
records.answer_from_json puts at the ranks the transport left out, and fixing anything: the caller
records the problems and scores an empty answer.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

ANSWER_FIELDS = ("text", "citations", "abstained", "retrieved", "context", "latency_ms")  # `usage` is optional
CHUNK_FIELDS = ("chunk_id", "doc_id", "text", "start", "end")
USAGE_COUNTS = ("prompt_tokens", "completion_tokens")  # `calls` is optional, as in records.usage_to_json
MALFORMED = "malformed"  # the first word of the error text


@dataclass(frozen=True)
class Opaque:
    """A value the grader's transport could not carry, standing in for it by its type's name (e.g. a set)."""

    type_name: str


_MISSING = object()


def _get(obj: Any, name: str) -> Any:
    """obj.name, or _MISSING when it has none (or reading it raises: the check itself never raises)."""
    try:
        return getattr(obj, name)
    except Exception:  # noqa: BLE001 - a candidate's property may raise anything
        return _MISSING


def _kind(value: Any) -> str:
    """How a problem names a value: "a str ('a.md#1')", "an int (3)", "a dict", "None"."""
    if value is None:
        return "None"
    name = value.type_name if isinstance(value, Opaque) else type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    shown = repr(value) if isinstance(value, (str, numbers.Number, np.generic)) else ""
    return f"{article} {name}" + (f" ({shown[:40]}{'...' if len(shown) > 40 else ''})" if shown else "")


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not is_bool(value)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not is_bool(value)


def is_finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(float(value))


def _finite_problem(value: Any) -> str | None:
    if not is_number(value):
        return f"{_kind(value)} is not a number"
    return None if math.isfinite(float(value)) else f"{float(value)!r} is not a finite number"


def _ids_problems(field: str, value: Any) -> list[str]:
    """citations and context: a list or tuple of str chunk ids."""
    if is_str(value):
        return [f"{field}: {_kind(value)} is not a list of chunk ids; a plain str is the classic mistake, "
                f"wrap it: ({value[:40]!r},)"]
    if not isinstance(value, (list, tuple)):
        return [f"{field}: {_kind(value)} is not a list or tuple of chunk ids"]
    return [f"{field}[{i}]: {_kind(item)} is not a str chunk id" for i, item in enumerate(value) if not is_str(item)]


def is_gap(hit: Any) -> bool:
    """The empty hit records.answer_from_json puts at a rank the transport left out (no id, no document, no span)."""
    chunk = _get(hit, "chunk")
    fields = [_get(chunk, name) for name in CHUNK_FIELDS]
    return all(is_str(v) and v == "" for v in fields[:3]) and all(is_int(v) and v == 0 for v in fields[3:])


def _chunk_problems(chunk: Any, texts: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """(".chunk.<field>" suffix, problem) pairs for one hit's chunk."""
    if chunk is _MISSING:
        return [(".chunk", "missing")]
    values = {name: _get(chunk, name) for name in CHUNK_FIELDS}
    found = []
    for name, value in values.items():
        wanted, test = ("an int", is_int) if name in ("start", "end") else ("a str", is_str)
        if value is _MISSING:
            found.append((f".chunk.{name}", "missing"))
        elif not test(value):
            found.append((f".chunk.{name}", f"{_kind(value)} is not {wanted}"))
    if found:
        return found
    start, end, doc_id = int(values["start"]), int(values["end"]), values["doc_id"]
    if start < 0:
        found.append((".chunk.start", f"{start} is negative"))
    if start > end:
        found.append((".chunk", f"start {start} is after end {end}"))
    text = texts.get(doc_id) if texts is not None else None
    if text is not None and end > len(text):
        found.append((".chunk.end", f"{end} is past the end of {doc_id!r} ({len(text)} characters)"))
    return found


def _hit_problems(hit: Any, texts: Mapping[str, str] | None) -> list[tuple[str, str]]:
    if is_gap(hit):
        return []
    found = _chunk_problems(_get(hit, "chunk"), texts)
    score = _get(hit, "score")
    problem = "missing" if score is _MISSING else _finite_problem(score)
    return found + ([(".score", problem)] if problem else [])


def _ranges(indexes: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _retrieved_problems(retrieved: Any, texts: Mapping[str, str] | None) -> list[str]:
    """One line per distinct problem, naming every hit that has it: "retrieved[0-19].score: nan is not..."."""
    if not isinstance(retrieved, (list, tuple)):
        return [f"retrieved: {_kind(retrieved)} is not a list or tuple of Hits"]
    grouped: dict[tuple[str, str], list[int]] = {}
    for i, hit in enumerate(retrieved):
        for suffix, problem in _hit_problems(hit, texts):
            grouped.setdefault((suffix, problem), []).append(i)
    return [f"retrieved[{_ranges(indexes)}]{suffix}: {problem}" for (suffix, problem), indexes in grouped.items()]


def _retrieved_ids(retrieved: Any) -> set[str] | None:
    """The chunk ids of the retrieved hits; None when `retrieved` is not a list or tuple or a hit has no str chunk
    id (reported already: which ids were retrieved is then unknown)."""
    if not isinstance(retrieved, (list, tuple)):
        return None
    ids = [_get(_get(hit, "chunk"), "chunk_id") for hit in retrieved]
    return set(ids) if all(is_str(cid) for cid in ids) else None


def _context_problems(context: Any, retrieved: Any) -> list[str]:
    found = _ids_problems("context", context)
    known = _retrieved_ids(retrieved)
    if found or known is None:
        return found
    stray = list(dict.fromkeys(cid for cid in context if cid not in known))
    if stray:
        shown = ", ".join(repr(cid) for cid in stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        found.append(f"context: {shown} not among the retrieved hits' chunk ids (the context is chosen from them)")
    return found


def _latency_problems(latency: Any) -> list[str]:
    if not isinstance(latency, Mapping):
        return [f"latency_ms: {_kind(latency)} is not a mapping of stage to milliseconds"]
    found = []
    for stage, value in latency.items():
        problem = _finite_problem(value)
        if problem:
            found.append(f"latency_ms[{stage!r}]: {problem}")
    return found


def _usage_problems(usage: Any) -> list[str]:
    if usage is _MISSING or usage is None:
        return []
    checks: dict[str, tuple[str, Callable[[Any], bool]]] = {
        **{name: ("an int", is_int) for name in USAGE_COUNTS}, "cost_usd": ("a finite number", is_finite),
        "cached": ("a bool", is_bool)}
    found = []
    for name, (wanted, test) in checks.items():
        value = _get(usage, name)
        if value is _MISSING:
            found.append(f"usage.{name}: missing")
        elif not test(value):
            found.append(f"usage.{name}: {_kind(value)} is not {wanted}")
    calls = _get(usage, "calls")
    if calls is not _MISSING and not is_int(calls):
        found.append(f"usage.calls: {_kind(calls)} is not an int")
    return found


def answer_problems(answer: Any, texts: Mapping[str, str] | None) -> list[str]:
    """Every problem of `answer` as "<field>: <problem>", in field order; [] for a well-formed answer.

    `texts` maps doc_id -> Document.text of the interviewer's corpus; None skips the one check that
    needs it (a chunk's end past its document's text), as records.answer_from_json does.
    """
    values = {name: _get(answer, name) for name in ANSWER_FIELDS}
    if all(value is _MISSING for value in values.values()):
        return [f"answer: {_kind(answer)} is not an Answer (return exercise.contracts.Answer(...))"]
    found = [f"{name}: missing" for name, value in values.items() if value is _MISSING]
    text, abstained = values["text"], values["abstained"]
    if text is not _MISSING and not is_str(text):
        found.append(f"text: {_kind(text)} is not a str")
    if values["citations"] is not _MISSING:
        found += _ids_problems("citations", values["citations"])
    if abstained is not _MISSING and not is_bool(abstained):
        found.append(f"abstained: {_kind(abstained)} is not a bool")
    if values["retrieved"] is not _MISSING:
        found += _retrieved_problems(values["retrieved"], texts)
    if values["context"] is not _MISSING:
        found += _context_problems(values["context"], values["retrieved"])
    if values["latency_ms"] is not _MISSING:
        found += _latency_problems(values["latency_ms"])
    return found + _usage_problems(_get(answer, "usage"))


def malformed_error(problems: Sequence[str]) -> str:
    """The error text a run records for an answer with problems: "malformed: <field>: <problem>; ..."."""
    return f"{MALFORMED}: " + "; ".join(problems)
