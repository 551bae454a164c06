"""A streamed /api/ask: StreamTap reports the context and text the pipeline's generator produces, as they come,
and stream_events() sends them as NDJSON AskEvent lines. Left out on purpose: routes and building the records sent."""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any, Callable, Iterator, Sequence

from exercise.contracts import Answer, Chunk, Generation
from harness.api import AskEvent, AskResponse, SourceOut

log = logging.getLogger("ragkata.service")  # the service's log: a streamed answer is one of its requests


class StreamTap:
    """The pipeline's generator, wrapped so that a streaming /api/ask sees the context and the text as they come.

    Outside a streaming request it only forwards generate(). Inside one (a listener set for this thread) it
    reports the chunks handed to the generator, then the text: through the generator's own
    stream(question, context, on_text) when it has one (exercise/llm.py's), else generate()'s text in one piece.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.local = threading.local()

    def __getattr__(self, name: str) -> Any:  # everything but generate() is the wrapped generator's
        if name in ("inner", "local"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generate(self, question: str, context: Sequence[Chunk]) -> Generation:
        listener = getattr(self.local, "listener", None)
        if listener is None:
            return self.inner.generate(question, context)
        listener.put(("context", list(context)))
        stream = getattr(self.inner, "stream", None)
        if callable(stream):
            return stream(question, context, lambda piece: listener.put(("text", piece)))
        generation = self.inner.generate(question, context)
        listener.put(("text", generation.text))
        return generation


def tap_generator(pipeline: Any) -> StreamTap | None:
    """Wrap pipeline.generator in a StreamTap; None when the pipeline has no generator it lets us replace
    (a streamed answer then arrives in one piece, once the pipeline has finished)."""
    generator = getattr(pipeline, "generator", None)
    if generator is None or not callable(getattr(generator, "generate", None)):
        return None
    tap = StreamTap(generator)
    try:
        pipeline.generator = tap
    except (AttributeError, TypeError):  # a frozen or slotted pipeline
        return None
    return tap


def stream_events(answer: Callable[[], Answer], tap: StreamTap | None, sources: Callable[[Sequence[Chunk]], list[SourceOut]],
                  respond: Callable[[Answer], AskResponse]) -> Iterator[str]:
    """NDJSON lines of AskEvent: "context" once, "delta"s, then "answer"; "error" instead if the pipeline raises.

    The pipeline runs in its own thread and reports through a queue. A pipeline whose generator could not be
    tapped sends its context and its whole text once it has answered.
    """
    events: queue.Queue = queue.Queue()
    threading.Thread(target=run_answer, args=(answer, tap, events), name="ask-stream", daemon=True).start()
    sent_context = sent_text = False
    while True:
        kind, payload = events.get()
        if kind == "context" and not sent_context:
            sent_context = True
            yield event_line(event="context", sources=sources(payload))
        elif kind == "text" and payload:
            sent_text = True
            yield event_line(event="delta", text=payload)
        elif kind == "error":
            yield event_line(event="error", detail=payload)
            return
        elif kind == "done":
            yield from final_lines(payload, respond, sent_context, sent_text)
            return


def run_answer(answer: Callable[[], Answer], tap: StreamTap | None, events: queue.Queue) -> None:
    """Answer with this thread's tap listening; put ("done", the Answer) or ("error", what it raised) last."""
    if tap is not None:
        tap.local.listener = events
    try:
        events.put(("done", answer()))
    except BaseException as exc:  # noqa: BLE001 - the candidate's code may raise anything; report it
        log.exception("pipeline call failed while streaming")
        events.put(("error", f"the pipeline raised {type(exc).__name__}: {exc}"))
    finally:
        if tap is not None:
            tap.local.listener = None


def final_lines(answer: Answer, respond: Callable[[Answer], AskResponse], sent_context: bool,
                sent_text: bool) -> Iterator[str]:
    """The "answer" line, after the context and text an untapped generator did not send; "error" if it cannot be built."""
    try:
        response = respond(answer)
    except Exception as exc:  # an Answer the response cannot be built from
        log.exception("could not build the response")
        yield event_line(event="error", detail=f"the pipeline's answer could not be read: {type(exc).__name__}: {exc}")
        return
    if not sent_context:
        yield event_line(event="context", sources=response.sources)
    if not sent_text and response.answer:
        yield event_line(event="delta", text=response.answer)
    yield event_line(event="answer", answer=response)


def event_line(**event: Any) -> str:
    """One AskEvent as a JSON line: the event's own unset fields left out; None inside the answer kept."""
    fields = AskEvent(**event).model_dump(mode="json")
    return json.dumps({name: value for name, value in fields.items() if value is not None}) + "\n"
