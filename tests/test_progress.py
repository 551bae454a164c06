"""Progress display (harness/progress.py): plain lines at an interval when output is not a terminal, driven by a
fake clock; the embedding cache's progress records shown as an "embedding" step; `ragkata eval` piped to a file.
No timing assertions: the clock is fake, and the piped run only checks what is written."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from harness.progress import EMBEDDING_LOGGER, Display, building, duration, embedding_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_display(clock: FakeClock, **options) -> tuple[Display, io.StringIO]:
    out = io.StringIO()
    return Display(Console(file=out, width=120), clock=clock, ticker=False, **options), out


def lines_of(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_plain_lines_at_the_start_every_interval_while_the_count_moves_and_at_the_end() -> None:
    clock = FakeClock()
    display, out = plain_display(clock, interval_s=5.0, idle_interval_s=30.0)
    assert display.live is False  # a StringIO is no terminal
    with display:
        step = display.step("embedding", total=1399, unit="chunks")
        for second in range(1, 15):  # 100 chunks a second; a line when 5 s have passed since the last one
            clock.now += 1
            step.update(min(100 * second, 1399))
        step.finish()
    assert lines_of(out) == [
        "embedding: 0/1,399 chunks, 0 s",
        "embedding: 500/1,399 chunks, 100/s, 9 s left",
        "embedding: 1,000/1,399 chunks, 100/s, 4 s left",
        "embedding: 1,399/1,399 chunks in 14 s, 100/s",
    ]
    assert "\r" not in out.getvalue()


def test_the_rate_leaves_out_the_wait_before_the_first_figure() -> None:
    clock = FakeClock()
    display, _ = plain_display(clock)
    step = display.step("embedding", total=1000, unit="chunks")
    clock.now += 20  # loading the model
    step.update(16)
    assert step.describe() == "16/1,000 chunks, 20 s"  # one figure: no rate yet
    clock.now += 2
    step.update(48)
    assert step.describe() == "48/1,000 chunks, 16/s, 1 min 00 s left"
    clock.now += 10  # the time left counts down between figures
    assert step.describe() == "48/1,000 chunks, 16/s, 50 s left"


def test_a_step_without_a_count_says_so_every_idle_interval_and_only_the_newest_one() -> None:
    clock = FakeClock()
    display, out = plain_display(clock, interval_s=5.0, idle_interval_s=30.0)
    build = display.step("index", state="building the index")
    for _ in range(8):  # 40 s of a build that reports nothing
        clock.now += 5
        display.tick()
    embedding = display.step("embedding", total=100, unit="chunks")
    for _ in range(8):  # 40 s more, while embedding moves: the build keeps quiet
        clock.now += 5
        embedding.advance(5)
        display.tick()
    build.finish("built")
    assert lines_of(out) == [
        "index: building the index, 0 s",
        "index: building the index, 30 s",
        "embedding: 0/100 chunks, 0 s",
        "embedding: 5/100 chunks, 5 s",  # one figure: no rate yet
        *[f"embedding: {n}/100 chunks, 1.0/s, {duration(100 - n)} left" for n in range(10, 45, 5)],
        "index: built in 1 min 20 s",
    ]


def test_the_embedding_caches_log_records_become_an_embedding_step_and_warnings_still_pass(caplog) -> None:
    clock = FakeClock()
    display, out = plain_display(clock, interval_s=5.0)
    logger = logging.getLogger(EMBEDDING_LOGGER)
    with caplog.at_level(logging.WARNING, logger=EMBEDDING_LOGGER):
        with embedding_progress(display):
            for done in (0, 16, 48, 112):
                clock.now += 3
                logger.info("embedded %d/%d texts", done, 112, extra={"progress": (done, 112)})
            logger.warning("corrupt rows in embedding cache")
            logger.info("embedded %d/%d texts", 0, 7, extra={"progress": (0, 7)})  # a second pass: a new step
            logger.info("embedded %d/%d texts", 7, 7, extra={"progress": (7, 7)})
        logger.info("embedded %d/%d texts", 0, 9, extra={"progress": (0, 9)})  # after the build: not shown
    assert "corrupt rows" in caplog.text and "embedded" not in caplog.text  # progress records are not logged
    assert lines_of(out) == [
        "embedding: 0/112 chunks, 0 s",
        "embedding: 48/112 chunks, 11/s, 6 s left",
        "embedding: 112/112 chunks in 9 s, 12/s",
        "embedding: 0/7 chunks, 0 s",
        "embedding: 7/7 chunks in 0 s",
    ]
    assert logger.filters == [] and not logger.isEnabledFor(logging.INFO)


def test_building_shows_the_build_and_says_when_it_is_done() -> None:
    out = io.StringIO()
    with building(Console(file=out, width=120), state="building the index", ticker=False):
        pass
    assert [line.rsplit(",", 1)[0].rsplit(" in ", 1)[0] for line in lines_of(out)] == [
        "index: building the index", "index: built"]


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (0.4, 6, 59.6, 100, 3599, 3780)] == ["0 s", "6 s", "1 min 00 s", "1 min 40 s",
                                                                      "59 min 59 s", "1 h 03 min"]


PIPELINE = '''
from pathlib import Path
import numpy as np
from exercise.embedding_cache import EmbeddingCache
from tests.conftest import FakePipeline

class Encoder:
    name, backend = "fake-model", "fake"

    def encode(self, texts):
        return np.ones((len(texts), 4), np.float32) / 2

def build_pipeline(config, documents):
    pipeline = FakePipeline(config, documents)
    EmbeddingCache(Path(__file__).parent / "cache").load_or_build(pipeline.chunks, Encoder())
    return pipeline
'''


def test_eval_piped_to_a_file_prints_plain_progress_lines(tmp_path: Path, fixture_corpus: Path,
                                                          fixture_golden: Path) -> None:
    (tmp_path / "embedding_pipeline.py").write_text(PIPELINE)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "RAGKATA_RUNS_DIR": str(tmp_path / "runs"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    with (tmp_path / "eval.txt").open("w") as out:
        subprocess.run([sys.executable, "-m", "harness.cli", "eval", "--corpus", str(fixture_corpus), "--golden",
                        str(fixture_golden), "--pipeline", "embedding_pipeline"], stdout=out, stderr=subprocess.STDOUT,
                       cwd=root, env=env, timeout=120, check=True)
    text = (tmp_path / "eval.txt").read_text()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text  # no redrawn bar, no escape codes
    assert lines[0].startswith("index: building the index")
    assert any(line.startswith("embedding: 0/") for line in lines)
    assert any(line.startswith("embedding: ") and " chunks in " in line for line in lines)
    assert any(line.startswith("index: built in ") for line in lines)
    assert any(line.startswith("questions: 0/") for line in lines)
    assert any(line.startswith("questions: ") and "/s" in line and " in " in line for line in lines)
    assert "evidence_recall@5" in text
