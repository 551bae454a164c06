"""Progress of the long steps (building an index, embedding, answering questions, grading a side): counts,
rate and time left, as a live bar in a terminal and as plain lines every few seconds otherwise.

    with Display(console) as display:
        step = display.step("questions", total=268)
        step.update(done)                      # "questions: 120/268, 45/s, 3 s left"
    with building(console, "index") as display: ...   # a build, with the embedding cache's progress

In a terminal (rich, like every table here) each step is a row with a bar, redrawn in place. When the
console is not a terminal (piped to a file, CI), each step prints a plain line when it starts, every
`interval_s` while its count moves (every `idle_interval_s` while it does not) and once when it ends; never a
carriage return. Both show the same text. The rate counts only after the first update of a step, so a
model load or a warm-up question before the first figure does not drag it down; the time left counts down
between updates.

The embedding cache (exercise/embedding_cache.py) logs an INFO record carrying `record.progress = (done,
total)` after each batch; `embedding_progress` catches those records on their logger while a pipeline builds
(a logger filter: they are shown, not propagated) and shows them as an "embedding" step. So a candidate's
build_pipeline needs no extra parameter, and a candidate's own encoder loop can log the same record.
Left out on purpose: progress of anything under ~2 s, and nested bars.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

EMBEDDING_LOGGER = "exercise.embedding_cache"  # exercise/embedding_cache.py's logger (its __name__)
Clock = Callable[[], float]


def duration(seconds: float) -> str:
    """2 s, 59 s, 1 min 40 s, 1 h 03 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def rate_text(rate: float) -> str:
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


class Step:
    """One long step: a count towards a total (or none yet), a state, and how fast the count moves."""

    def __init__(self, display: Display, name: str, total: int | None, unit: str, state: str, window_s: float = 30.0):
        self.display, self.name, self.unit = display, name, unit
        self.total, self.state, self.done = total, state, 0
        self.started = display.clock()
        self.finished: float | None = None
        self.samples: deque[tuple[float, int]] = deque()  # (time, done), one per change of done
        self.window_s = window_s
        self.last_print: float | None = None  # plain mode: when this step last printed a line, and what count
        self.last_print_done = -1
        self.final_printed = False
        self.task_id = None  # terminal mode: the rich task

    def update(self, done: int | None = None, total: int | None = None, state: str | None = None) -> None:
        """Set the count (and the total, or the state: "" once counting starts); redraw or maybe print a line."""
        with self.display.lock:
            now = self.display.clock()
            if total is not None and total != self.total:
                self.total, self.samples = total, deque()
            if state is not None:
                self.state = state
            if done is not None and done != self.done:
                if done < self.done:
                    self.samples.clear()
                self.done = done
                self.samples.append((now, done))
                while len(self.samples) > 2 and now - self.samples[0][0] > self.window_s:
                    self.samples.popleft()
        self.display.changed(self)

    def advance(self, by: int = 1) -> None:
        self.update(self.done + by)

    def finish(self, state: str = "") -> None:
        """The step is over: its last line says how long it took (and the mean rate)."""
        if self.finished is not None:
            return
        with self.display.lock:
            self.finished = self.display.clock()
            self.state = state
        self.display.changed(self)

    def rate(self) -> float | None:
        """Counts per second over the updates of the last window_s seconds, after the first update."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 and d1 > d0 else None

    def describe(self, now: float | None = None) -> str:
        """The text after the name: '812/1,399 chunks, 95/s, 6 s left' or 'building the index, 35 s'."""
        with self.display.lock:
            now = self.display.clock() if now is None else now
            unit = f" {self.unit}" if self.unit else ""
            elapsed = (self.finished if self.finished is not None else now) - self.started
            if self.finished is not None:
                if self.state or not self.total:
                    return f"{self.state or 'done'} in {duration(elapsed)}"
                mean = f", {rate_text(self.done / elapsed)}" if self.done and elapsed > 0 else ""
                return f"{self.done:,}/{self.total:,}{unit} in {duration(elapsed)}{mean}"
            if self.total is None or (self.state and not self.done):
                return f"{self.state or 'working'}, {duration(elapsed)}"
            text = f"{self.done:,}/{self.total:,}{unit}"
            rate = self.rate()
            if rate:
                left = (self.total - self.done) / rate - (now - self.samples[-1][0])  # counts down between updates
                text += f", {rate_text(rate)}, {duration(max(0.0, left))} left"
            else:
                text += f", {duration(elapsed)}"
            return text

    def line(self, now: float | None = None) -> str:
        return f"{self.name}: {self.describe(now)}"


class StepColumn(ProgressColumn):
    """The step's own text, so the bar and the plain lines say the same thing."""

    def render(self, task: Task) -> Text:
        step = task.fields.get("step")
        return Text(step.describe() if step else "")


class Display:
    """The steps of one command, live in a terminal or as plain lines; use it as a context manager.

    live: None decides from the console (a terminal that is not 'dumb'). interval_s: the least time between
    two plain lines of a step whose count moved; idle_interval_s: of a step whose count did not. clock and
    ticker=False are for tests, which call tick() themselves; the ticker thread prints lines of steps that
    receive no updates (a build) in plain mode.
    """

    def __init__(self, console: Console, live: bool | None = None, interval_s: float = 5.0,
                 idle_interval_s: float = 30.0, clock: Clock = time.monotonic, ticker: bool = True):
        self.console, self.clock = console, clock
        self.live = console.is_terminal and not console.is_dumb_terminal if live is None else live
        self.interval_s, self.idle_interval_s = interval_s, idle_interval_s
        self.lock = threading.RLock()
        self.steps: list[Step] = []
        self.bars: Progress | None = None
        self._ticker = ticker and not self.live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Display:
        if self.live:
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), StepColumn(), console=self.console)
            self.bars.start()
        elif self._ticker:
            self._thread = threading.Thread(target=self._tick_forever, name="ragkata-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self.bars is not None:
            self.bars.stop()
            self.bars = None

    def step(self, name: str, total: int | None = None, unit: str = "", state: str = "") -> Step:
        """A new step, shown at once: a plain line, or a row of the live display."""
        step = Step(self, name, total, unit, state)
        with self.lock:
            self.steps.append(step)
        if self.bars is not None:  # never call rich while holding self.lock: its refresh thread takes it to render
            step.task_id = self.bars.add_task(name, total=None, step=step)
        self.changed(step)
        return step

    def changed(self, step: Step) -> None:
        if self.bars is not None and step.task_id is not None:
            with self.lock:
                if step.finished is not None:
                    total = done = step.total or 1
                elif step.total is None or (step.state and not step.done):
                    total, done = None, 0  # building: a pulsing bar and the elapsed time
                else:
                    total, done = step.total, step.done
            self.bars.update(step.task_id, total=total, completed=done)
        elif not self.live:
            self._maybe_print(step)

    def tick(self) -> None:
        """Plain mode: print the line of every unfinished step that is due. Of the steps whose count has not
        moved, only the newest says it is still going (not the build around an embedding step)."""
        with self.lock:
            going = [step for step in self.steps if step.finished is None]
        for step in going:
            self._maybe_print(step, idle=step is going[-1])

    def _maybe_print(self, step: Step, idle: bool = True) -> None:
        with self.lock:
            now = self.clock()
            final = step.finished is not None
            if final and step.final_printed:
                return
            if step.last_print is not None and not final:
                since = now - step.last_print
                moved = step.done != step.last_print_done
                if not ((idle and since >= self.idle_interval_s) or (moved and since >= self.interval_s)):
                    return
            step.last_print, step.last_print_done, step.final_printed = now, step.done, final
            text = step.line(now)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _tick_forever(self) -> None:
        while not self._stop.wait(0.5):
            self.tick()


class _EmbeddingFilter(logging.Filter):
    """Turns the embedding cache's progress records into updates of an "embedding" step, and drops them."""

    def __init__(self, on_progress: Callable[[int, int], None]):
        super().__init__()
        self.on_progress = on_progress

    def filter(self, record: logging.LogRecord) -> bool:
        progress = getattr(record, "progress", None)
        if not (isinstance(progress, tuple) and len(progress) == 2):
            return True  # any other record goes on as usual (a warning reaches stderr)
        try:
            self.on_progress(int(progress[0]), int(progress[1]))
        except (TypeError, ValueError):
            pass
        return False


@contextmanager
def catch_embedding_progress(on_progress: Callable[[int, int], None],
                             logger_name: str = EMBEDDING_LOGGER) -> Iterator[None]:
    """While inside, on_progress(done, total) is called for each progress record of the embedding cache."""
    logger = logging.getLogger(logger_name)
    level, keep = logger.level, _EmbeddingFilter(on_progress)
    logger.addFilter(keep)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)  # only this logger: its INFO records are exactly the progress records
    try:
        yield
    finally:
        logger.removeFilter(keep)
        logger.setLevel(level)


@contextmanager
def embedding_progress(display: Display, name: str = "embedding", unit: str = "chunks") -> Iterator[None]:
    """Show the embedding cache's progress as a step of `display`; a new pass (a count that restarts, another
    total) is a new step, and a step that reaches its total is finished."""
    current: list[Step] = []

    def show(done: int, total: int) -> None:
        step = current[-1] if current else None
        if step is None or step.finished is not None or total != step.total or done < step.done:
            if step is not None:
                step.finish()
            step = display.step(name, total=total, unit=unit)
            current.append(step)
        step.update(done)
        if total and done >= total:
            step.finish()

    with catch_embedding_progress(show):
        yield
    for step in current:
        step.finish()


@contextmanager
def building(console: Console, name: str = "index", state: str = "loading the corpus and building the index",
             **options) -> Iterator[Display]:
    """A display for building a pipeline: one step with the elapsed time, plus the embedding cache's progress."""
    with Display(console, **options) as display:
        step = display.step(name, state=state)
        with embedding_progress(display):
            yield display
        step.finish("built")
