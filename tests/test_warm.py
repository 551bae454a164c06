"""The warm `ragkata ask` (harness/warm.py), through real processes: `python -m harness.cli ask` run in a scratch
folder holding a small pipeline package, over the fixture corpus. It answers as a cold ask does, is reused,
is never served stale after an edit to the pipeline's files or a new config, exits when told or idle, and
reports a build error as a cold ask would. Every test stops what it started (the `warm_folder` fixture kills
any process left and checks none is). No timing is asserted; bench/ask.py measures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exercise.config import Config
from harness import warm
from harness.ask_view import print_ask

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How many lifecycle rules per bucket?"

PIPELINE = '''
"""A word-overlap pipeline for the warm-ask tests; TAG marks which version of this file answered."""
import re
from exercise.contracts import Answer, Chunk, Hit, IndexStats

TAG = "{tag}"
WORD = re.compile(r"[a-z0-9-]+")


class Pipeline:
    def __init__(self, config, documents):
        if config.answer_sentences == 99:
            raise ValueError("answer_sentences=99 is refused by the test pipeline")
        self.config = config
        self.chunks = [Chunk(f"{{d.doc_id}}#{{n}}", d.doc_id, p, d.text.index(p), d.text.index(p) + len(p))
                       for d in documents for n, p in enumerate(x for x in d.text.split("\\n\\n") if x.strip())]
        self.index_stats = IndexStats(len(self.chunks), 0.0, False)

    def answer(self, question):
        if "RAISE" in question:
            raise RuntimeError("the test pipeline was asked to fail")
        words = set(WORD.findall(question.lower()))
        scored = sorted(((len(words & set(WORD.findall(c.text.lower()))), -i, c) for i, c in enumerate(self.chunks)),
                        key=lambda t: (t[0], t[1]), reverse=True)
        hits = tuple(Hit(c, float(s)) for s, _, c in scored[: self.config.k_retrieve])
        context = hits[: self.config.k_context]
        return Answer(question, TAG + ": " + context[0].chunk.text.split(". ")[0], (context[0].chunk.chunk_id,),
                      False, hits, tuple(h.chunk.chunk_id for h in context), {{"total": 1.0}})


def build_pipeline(config, documents):
    return Pipeline(config, documents)
'''


@dataclass
class WarmFolder:
    """A scratch folder with the package `warmkata`, where asks run; remembers every warm pid it saw."""

    path: Path
    corpus: Path
    pids: set[int] = field(default_factory=set)

    def write_pipeline(self, tag: str) -> None:
        (self.path / "warmkata" / "pipeline.py").write_text(PIPELINE.format(tag=tag))

    def ask(self, *extra: str, question: str = QUESTION, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "harness.cli", "ask", question, "--pipeline", "warmkata", "--corpus",
                   str(self.corpus), "--config", f"cache_dir={self.path / 'c'}", *extra]
        environ = {**os.environ, "RAGKATA_WARM": "1", "PYTHONPATH": f"{self.path}{os.pathsep}{ROOT}",
                   "COLUMNS": "120", **(env or {})}
        environ.pop("PYTEST_CURRENT_TEST", None)
        done = subprocess.run(command, cwd=self.path, env=environ, capture_output=True, text=True, timeout=300)
        self.pids.update(int(p) for p in re.findall(r"started a warm ragkata process \(pid (\d+)", done.stderr))
        return done

    @property
    def directory(self) -> Path:
        return warm.warm_directory(Config(cache_dir=str(self.path / "c")))

    def family_files(self, suffix: str) -> list[Path]:
        family = warm.family_of(str(self.path.resolve()), "warmkata")
        return sorted(self.directory.glob(f"{family}-*{suffix}")) if self.directory.is_dir() else []

    def alive(self) -> set[int]:
        return {pid for pid in self.pids if warm.pid_alive(pid) and not zombie(pid)}


def zombie(pid: int) -> bool:
    """A process that exited but was not reaped (its parent, the ask, is gone; init reaps it soon)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def wait_gone(folder: WarmFolder, pids: set[int], seconds: float = 60) -> set[int]:
    """The pids still running after waiting up to `seconds` for them to exit."""
    deadline = time.monotonic() + seconds
    while (left := {p for p in pids if warm.pid_alive(p) and not zombie(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def warm_folder(tmp_path, fixture_corpus):
    folder = WarmFolder(tmp_path, fixture_corpus)
    (tmp_path / "warmkata").mkdir()
    (tmp_path / "warmkata" / "__init__.py").write_text("")
    folder.write_pipeline("v1")
    yield folder
    with contextlib.suppress(Exception):
        warm.stop_all(folder.directory, warm.family_of(str(tmp_path.resolve()), "warmkata"))
    for pid in folder.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_gone(folder, folder.pids, 10) == set(), "a warm process outlived its test"


def plain(output: str) -> str:
    """An ask's output without its latency line (the one line that may differ between two asks)."""
    return "\n".join(line for line in output.splitlines() if not line.startswith("latency ms:"))


def test_the_first_ask_starts_a_warm_process_and_later_asks_reuse_it_with_the_cold_answer(warm_folder):
    first = warm_folder.ask()
    assert first.returncode == 0, first.stderr
    assert "started a warm ragkata process (pid" in first.stderr and "exits after 15 idle minutes" in first.stderr
    assert "ragkata ask --cold" in first.stderr
    (pid,) = warm_folder.pids
    second = warm_folder.ask()
    assert second.returncode == 0, second.stderr
    assert "started" not in second.stderr and warm_folder.pids == {pid}
    cold = warm_folder.ask("--cold")
    assert cold.returncode == 0 and "started" not in cold.stderr
    assert plain(first.stdout) == plain(second.stdout) == plain(cold.stdout)
    for text in ("retrieved (top 10 of", "context (5 chunks", "[1] guides/lifecycle.md#", "(rank 1, score",
                 "answer", "v1: ", "citations", "    [1] guides/lifecycle.md#"):
        assert text in second.stdout
    assert "\x1b[" not in second.stdout and "┃" not in second.stdout  # piped: plain text
    assert len(warm_folder.family_files(".sock")) == 1


def test_the_warm_answer_record_equals_the_cold_one(warm_folder, monkeypatch, fixture_corpus):
    from harness.corpus import load_corpus
    from harness.runner import load_pipeline

    assert warm_folder.ask().returncode == 0
    monkeypatch.chdir(warm_folder.path)
    monkeypatch.syspath_prepend(str(warm_folder.path))
    config = Config(cache_dir=str(warm_folder.path / "c"))
    key = warm.warm_key("warmkata", fixture_corpus, config)
    assert key is not None and key.socket.exists()
    got = warm.ask(key, QUESTION, on_started=lambda pid: pytest.fail("a second process was started"))
    expected = load_pipeline("warmkata", config, load_corpus(fixture_corpus)).answer(QUESTION)
    assert got == expected  # every field: text, citations, context, each hit's chunk and score


def test_an_edit_to_the_pipeline_or_a_new_config_is_never_served_stale(warm_folder):
    assert "v1: " in warm_folder.ask().stdout
    (old,) = warm_folder.pids
    warm_folder.write_pipeline("v2")
    edited = warm_folder.ask()
    assert edited.returncode == 0, edited.stderr
    assert "v2: " in edited.stdout and "v1: " not in edited.stdout
    assert "started a warm ragkata process" in edited.stderr
    assert wait_gone(warm_folder, {old}) == set()  # the stale process was stopped, not left to idle
    (new,) = warm_folder.pids - {old}

    narrow = warm_folder.ask("--config", "k_context=2")
    assert "context (2 chunks" in narrow.stdout and "started a warm ragkata process" in narrow.stderr
    assert new in warm_folder.alive()  # same sources, other config: both stay warm
    assert "context (5 chunks" in warm_folder.ask().stdout and len(warm_folder.pids) == 3

    (warm_folder.path / "warmkata" / "helper.py").write_text("X = 1\n")  # any file of the package counts
    assert "started a warm ragkata process" in warm_folder.ask().stderr


def test_a_changed_corpus_starts_a_fresh_process(warm_folder, tmp_path, fixture_corpus):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(fixture_corpus, corpus)
    warm_folder.corpus = corpus
    assert warm_folder.ask().returncode == 0
    page = corpus / "guides" / "lifecycle.md"
    page.write_text(page.read_text().replace("250", "300"))
    changed = warm_folder.ask()
    assert "started a warm ragkata process" in changed.stderr and "300" in changed.stdout


def test_the_warm_process_exits_when_told_and_when_idle(warm_folder):
    assert warm_folder.ask().returncode == 0
    (pid,) = warm_folder.pids
    stop = subprocess.run([sys.executable, "-m", "harness.cli", "ask", "--stop", "--config",
                           f"cache_dir={warm_folder.path / 'c'}"], cwd=warm_folder.path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert stop.returncode == 0 and f"stopped 1 warm ragkata process(es) (pid {pid})" in stop.stderr
    assert wait_gone(warm_folder, {pid}) == set()
    assert warm_folder.family_files(".sock") == [] and warm_folder.family_files(".pid") == []

    idle = warm_folder.ask(env={"RAGKATA_WARM_IDLE_MINUTES": "0.005"})
    assert idle.returncode == 0 and "exits after 0.005 idle minutes" in idle.stderr
    assert wait_gone(warm_folder, warm_folder.pids) == set()
    assert warm_folder.family_files(".sock") == []


def test_a_build_error_is_reported_as_a_cold_ask_reports_it_and_leaves_nothing_running(warm_folder):
    failed = warm_folder.ask("--config", "answer_sentences=99")
    assert failed.returncode == 2
    assert "error: answer_sentences=99 is refused by the test pipeline" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert wait_gone(warm_folder, warm_folder.pids) == set()
    assert warm_folder.family_files(".sock") == [] and warm_folder.family_files(".pid") == []


def test_a_question_that_raises_is_an_error_line_and_the_process_stays_up(warm_folder):
    assert warm_folder.ask().returncode == 0
    raised = warm_folder.ask(question="please RAISE")
    assert raised.returncode == 1
    assert "error: the pipeline raised RuntimeError: the test pipeline was asked to fail" in raised.stderr
    assert "Traceback" in raised.stderr and "pipeline.py" in raised.stderr  # where it raised, to reproduce it
    assert warm_folder.alive() == warm_folder.pids
    assert warm_folder.ask().returncode == 0 and len(warm_folder.pids) == 1


def test_tests_run_cold_unless_they_ask_and_ragkata_warm_0_turns_it_off():
    assert warm.warm_wanted({"PYTEST_CURRENT_TEST": "x"}) is False
    assert warm.warm_wanted({"PYTEST_CURRENT_TEST": "x", "RAGKATA_WARM": "1"}) is True
    assert warm.warm_wanted({"RAGKATA_WARM": "0"}) is False
    assert warm.warm_wanted({}) is True


def test_a_pipeline_that_lives_in_no_file_runs_cold(fake_pipeline_module, fixture_corpus):
    assert warm.warm_key(fake_pipeline_module, fixture_corpus, Config()) is None


def test_the_answer_survives_the_wire(fixture_corpus):
    from harness.corpus import load_corpus
    from tests.conftest import FakePipeline

    answer = FakePipeline(Config(), load_corpus(fixture_corpus)).answer(QUESTION)
    assert warm.reply_answer({"ok": True, "answer": warm.answer_to_json(answer)}, QUESTION) == answer
    broken = dataclasses.replace(answer, citations=answer.citations[0])  # a str: never split into characters
    with pytest.raises(warm.WarmError, match="malformed: citations"):
        warm.reply_answer({"ok": True, "answer": warm.answer_to_json(broken)}, QUESTION)


def test_piped_output_is_plain_and_a_terminal_gets_a_table(fixture_corpus):
    import io

    from rich.console import Console

    from harness.corpus import load_corpus
    from tests.conftest import FakePipeline

    answer = FakePipeline(Config(), load_corpus(fixture_corpus)).answer(QUESTION)
    piped = io.StringIO()
    print_ask(answer, 3, Console(file=piped, width=100))
    text = piped.getvalue()
    assert "retrieved (top 3 of" in text and "─" not in text and "\x1b[" not in text
    full = next(h.chunk for h in answer.retrieved if h.chunk.chunk_id == answer.context[1])
    assert all(line.strip() in text for line in full.text.splitlines())  # the whole text, not cut
    terminal = io.StringIO()
    print_ask(answer, 3, Console(file=terminal, width=100, force_terminal=True))
    assert "\x1b[" in terminal.getvalue() and "context (5 chunks" in terminal.getvalue()
