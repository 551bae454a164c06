"""The grader holds against a hostile candidate (tests/fixtures/hostile_candidate).

The fixture is graded once, jailed with bubblewrap, from a stand-in interviewer folder that holds a
holdout and TRAPS.md carrying a secret, with a service listening on loopback and a candidate git config
whose fsmonitor, hooks and filters would leave a mark. Each test then checks one attack was contained.
The jailed tests skip where bubblewrap cannot run (CI installs it); the others run everywhere.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from grader import digest, isolation
from grader.capped_log import CappedLog
from grader.grade import fold_ratings, grade
from grader.isolation import INTERVIEWER_ROOT, IsolationError, Route, bwrap_problem, choose
from grader.sandbox import Limits
from harness.runner import read_samples

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = FIXTURES / "hostile_candidate"
BROKEN = FIXTURES / "broken_candidate"
GOLDEN = FIXTURES / "golden.jsonl"
CORPUS = FIXTURES / "corpus"
SECRET = "HOLDOUT-SECRET-7f3a91"
MARKER = "HOSTILE_WAS_HERE"
BWRAP = bwrap_problem()
needs_bwrap = pytest.mark.skipif(BWRAP is not None, reason=f"bubblewrap cannot jail here: {BWRAP}")


def mode(question: str) -> int:
    """The hostile pipeline's answer mode (tests/fixtures/hostile_candidate/exercise/pipeline.py)."""
    return zlib.crc32(question.encode()) % 6


def golden_lines() -> list[dict]:
    """The fixture questions, plus copies of fx-01 reworded until every answer mode appears."""
    lines = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    seen = {mode(q["question"]) for q in lines}
    base, n = lines[0], 0
    while len(seen) < 6:
        n += 1
        question = f"{base['question']} ({n})"
        if mode(question) not in seen:
            seen.add(mode(question))
            lines.append({**base, "id": f"fx-extra-{n}", "question": question})
    return lines


class Listener(http.server.ThreadingHTTPServer):
    """A service on the host's loopback that records every request it gets."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.paths.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"host service secret")

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def hostile_repo(root: Path, port: int, marker: Path) -> Path:
    """The hostile fixture as a git repository whose config runs `marker`-writing commands from git."""
    shutil.copytree(HOSTILE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "golden_set").mkdir()
    (root / "golden_set" / "dev.jsonl").write_text("".join(json.dumps(q) + "\n" for q in golden_lines()))
    (root / "hostile.json").write_text(json.dumps({"port": port, "flood_mb": 6, "daemon_seconds": 60}))
    git = ["git", "-C", str(root), "-c", "user.name=c", "-c", "user.email=c@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "hostile"], check=True)
    hooks = root / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "post-checkout", "reference-transaction", "fsmonitor-watchman"):
        (hooks / hook).write_text(f"#!/bin/sh\necho hook >> {marker}\n")
        (hooks / hook).chmod(0o755)
    with (root / ".git" / "config").open("a") as config:
        config.write(f'[core]\n\tfsmonitor = "echo fsmonitor >> {marker}; false"\n\thooksPath = {hooks}\n'
                     f'\tpager = echo pager >> {marker}\n[diff]\n\texternal = "echo diff >> {marker}"\n'
                     f'[filter "evil"]\n\tclean = "echo clean >> {marker}; cat"\n\tsmudge = "echo smudge >> {marker}; cat"\n')
    (root / ".gitattributes").write_text("* filter=evil\n")
    (root / "exercise" / "config.py").write_text((root / "exercise" / "config.py").read_text() + "\n")  # dirty
    return root


def interviewer_folder(root: Path) -> Path:
    """Where the interviewer runs the grade: a holdout and TRAPS.md that carry SECRET."""
    (root / "golden_set").mkdir(parents=True)
    (root / "golden_set" / "holdout.jsonl").write_text(
        "".join(json.dumps({**q, "id": q["id"].replace("fx", "ho"), "answer": f"{q['answer']} {SECRET}"}) + "\n"
                for q in golden_lines()))
    (root / "golden_set" / "TRAPS.md").write_text(f"# Traps\n{SECRET}\n")
    return root


def hostile_daemons() -> list[str]:
    """Host processes whose command line names the hostile daemon."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ragkata-hostile-daemon" in cmdline:
                found.append(entry.name)
    return found


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    """The hostile candidate graded once, jailed: (scorecard, out folder, tmp folder, listener, git marker, start time)."""
    if BWRAP is not None:
        pytest.skip(f"bubblewrap cannot jail here: {BWRAP}")
    tmp = tmp_path_factory.mktemp("hostile")
    marker = tmp / "git-ran"
    server = Listener()
    candidate = hostile_repo(tmp / "candidate", server.server_address[1], marker)
    interviewer = interviewer_folder(tmp / "interviewer")
    started = time.time()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAGKATA_RETRIEVER", "bm25")
        patch.setenv("HOME", str(tmp / "home"))
        patch.setenv(digest.KEY_FILE_ENV, str(tmp / "home" / "grader.key"))
        patch.chdir(interviewer)
        card = grade(candidate, tmp / "out", candidate / "golden_set" / "dev.jsonl",
                     interviewer / "golden_set" / "holdout.jsonl", CORPUS, "exercise",
                     limits=Limits(timeout_s=5, memory_mb=4096), run_tests=True, isolation="bwrap")
        yield card, tmp / "out", tmp, server, marker, started
    server.shutdown()


@needs_bwrap
def test_no_holdout_text_reaches_the_candidates_answers_or_log(hostile):
    card, out, *_ = hostile
    for side_split in ("candidate-dev", "candidate-holdout"):
        samples = read_samples(out / "runs" / side_split / "samples.jsonl")
        assert samples and not any(SECRET in s.answer for s in samples)
    log = (out / "logs" / "candidate.log").read_text(errors="replace")
    assert "HOSTILE read-holdout" in log and SECRET not in log
    assert "no loot" in json.dumps([s.answer for s in read_samples(out / "runs" / "candidate-dev" / "samples.jsonl")])


@needs_bwrap
def test_scores_come_from_the_parent_not_from_forged_files(hostile):
    card, out, *_ = hostile
    dev = card.summaries["candidate"]["dev"]
    assert dev.metrics["citation_precision"] < 1.0 and dev.failures["error"] >= 4  # malformed answers are errors
    lines = [json.loads(line) for line in (out / "runs" / "candidate-dev" / "samples.jsonl").read_text().splitlines()]
    assert any(line["failure"] == "error" for line in lines)  # the record in --out was never rewritten
    assert json.loads((out / "scorecard.json").read_text())["digest"] == card.digest


@needs_bwrap
def test_nothing_is_written_outside_the_candidates_copy(hostile):
    card, out, tmp, *_, started = hostile
    places = [INTERVIEWER_ROOT, tmp / "interviewer", tmp / "home", out, Path(isolation.sys.prefix)]
    written = [p for place in places if place.exists() for p in place.rglob(MARKER)]
    assert written == []
    planted = [p for place in places if place.exists() for p in place.rglob("sitecustomize.py")
               if p.stat().st_mtime >= started]
    assert planted == []
    assert not (Path("/tmp") / MARKER).exists() or (Path("/tmp") / MARKER).stat().st_mtime < started
    assert not list(Path("/tmp").glob("ragkata-jail-*/candidate"))  # the private copy is removed after the grade


@needs_bwrap
def test_no_process_of_the_candidate_outlives_the_grade(hostile):
    log = (hostile[1] / "logs" / "candidate.log").read_text(errors="replace")
    assert "HOSTILE survive: started daemon" in log  # it tried
    assert hostile_daemons() == []


@needs_bwrap
def test_the_candidates_conftest_runs_only_inside_the_jail(hostile):
    card, out, tmp, *_ = hostile
    assert card.tests["ran"] and card.tests["passed"] == 1
    text = (out / "logs" / "tests.log").read_text(errors="replace")
    assert "HOSTILE conftest: ran in /candidate" in text
    assert not (tmp / "interviewer" / MARKER).exists() and not (INTERVIEWER_ROOT / MARKER).exists()


@needs_bwrap
def test_the_candidates_git_config_never_runs(hostile):
    card, _, _, _, marker, _ = hostile
    assert card.candidate["commit"] and card.candidate["dirty"] is True  # git was read, through a clean clone
    assert not marker.exists(), marker.read_text()


@needs_bwrap
def test_the_hosts_loopback_services_are_out_of_reach(hostile):
    card, out, _, server, *_ = hostile
    assert server.paths == []
    assert "HOSTILE loopback" in (out / "logs" / "candidate.log").read_text(errors="replace")


@needs_bwrap
def test_the_flood_is_capped_with_head_and_tail_kept(hostile):
    log = hostile[1] / "logs" / "candidate.log"
    text = log.read_text(errors="replace")
    assert log.stat().st_size < 2 * 2**20 + 10_000  # 6 MB were printed
    assert "bytes left out here" in text
    head, _, tail = text.partition("bytes left out here")
    assert "HOSTILE discover" in head and "HOSTILE discover" in tail


@needs_bwrap
def test_malformed_records_are_labelled_with_the_field(hostile):
    card, out, *_ = hostile
    samples = {s.question: s for s in read_samples(out / "runs" / "candidate-dev" / "samples.jsonl")}
    by_mode: dict[int, list] = {}
    for question, sample in samples.items():
        by_mode.setdefault(mode(question), []).append(sample)
    expected = {0: "citations", 1: "context", 2: "score", 4: "Answer"}
    for number, field in expected.items():
        for sample in by_mode[number]:
            assert sample.error and sample.error.startswith("malformed:") and field in sample.error, sample.error
    for sample in by_mode[3]:  # a forged chunk holding the quote, at offsets that do not: it covers nothing
        assert sample.scores["citation_precision"] == 0.0, sample
    for sample in by_mode[5]:
        assert sample.error is None


@needs_bwrap
def test_the_scorecard_names_the_jail(hostile):
    card, out, *_ = hostile
    assert card.inputs["isolation"]["level"] == "bwrap" and card.alerts == []
    assert "isolation bwrap" in (out / "scorecard.md").read_text()


def grade_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holdout: Path | None = None,
                 reference: str = "exercise", isolation: str = "none"):
    """The broken candidate graded on the fixture corpus with a key of its own, BM25 everywhere."""
    monkeypatch.setenv(digest.KEY_FILE_ENV, str(tmp_path / "grader.key"))
    monkeypatch.setenv("RAGKATA_RETRIEVER", "bm25")
    candidate = tmp_path / "candidate"
    shutil.copytree(BROKEN, candidate, ignore=shutil.ignore_patterns("__pycache__"))
    return grade(candidate, tmp_path / "out", GOLDEN, holdout, CORPUS, reference,
                 limits=Limits(timeout_s=0.5 if isolation == "none" else 5, memory_mb=2048), run_tests=False,
                 isolation=isolation)


def test_a_changed_scorecard_is_refused_by_render_only(tmp_path, monkeypatch):
    grade_broken(tmp_path, monkeypatch)
    ratings = tmp_path / "ratings.json"
    ratings.write_text(json.dumps({"code_quality": {"score": 3, "note": "fine"}}))
    fold_ratings(tmp_path / "out", ratings)  # an untouched scorecard folds
    path = tmp_path / "out" / "scorecard.json"
    data = json.loads(path.read_text())
    data["headline"]["rows"][0]["flagged"] = False if data["headline"]["rows"][0]["flagged"] else True
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="changed after grading"):
        fold_ratings(tmp_path / "out", ratings)
    del data["digest"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="carries no digest"):
        fold_ratings(tmp_path / "out", ratings)


def test_an_unconfined_grade_says_so_on_the_first_line(tmp_path, monkeypatch):
    card = grade_broken(tmp_path, monkeypatch)
    assert card.alerts[0].startswith("UNISOLATED")
    assert (tmp_path / "out" / "scorecard.md").read_text().splitlines()[0].startswith("> **UNISOLATED")
    html = (tmp_path / "out" / "scorecard.html").read_text()
    assert html.index("UNISOLATED") < html.index("<h1>")


def test_without_a_jail_grade_refuses_and_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(isolation, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(isolation, "container_engine", lambda: None)
    with pytest.raises(IsolationError) as refused:
        choose("auto")
    assert all(fix in str(refused.value) for fix in ("apt install bubblewrap", "--isolation docker", "--isolation none"))
    with pytest.raises(IsolationError, match="bwrap"):
        choose("bwrap")
    assert choose("none") == "none"
    with pytest.raises(IsolationError, match="choose one of"):
        choose("chroot")


def test_grading_with_the_candidates_own_copy_of_the_grader_is_refused(tmp_path):
    """A folder that holds this grader is the candidate's copy: its harness/ and grader/ would judge them."""
    with pytest.raises(ValueError, match="inside the candidate's folder"):
        grade(INTERVIEWER_ROOT, tmp_path / "out", GOLDEN, None, CORPUS, "exercise", isolation="none")


@pytest.mark.parametrize("url, inside, name", [
    ("http://127.0.0.1:8081/v1", "http://127.0.0.1:8081/v1", None),
    ("http://localhost:9000/v1", "http://127.0.0.1:9000/v1", None),
    ("http://10.0.0.5:8081/v1", "http://127.0.0.1:8081/v1", None),
    ("https://api.example.com/v1", "https://api.example.com:{443}/v1", "api.example.com"),
])
def test_the_endpoint_route_keeps_scheme_path_and_host_name(url, inside, name):
    route = Route.of(url)
    port = 443 if os.geteuid() == 0 else 40443
    assert route.inside_url == inside.replace("{443}", str(port)) and route.name == name


def test_a_capped_log_keeps_head_and_tail_and_counts_the_rest(tmp_path):
    log = CappedLog(tmp_path / "log", keep=100)
    log.write(b"H" * 60)
    log.write(b"x" * 1000 + b"T" * 100)
    assert log.last_text().endswith("T" * 100)
    log.close()
    head, _, tail = (tmp_path / "log").read_bytes().partition(b"\n--- 960 bytes left out here")
    assert head == b"H" * 60 + b"x" * 40  # the first 100 bytes
    assert tail.endswith(b"T" * 100) and len(tail.split(b"---\n", 1)[1]) == 100


def test_a_container_worker_has_no_network_a_memory_limit_and_no_key_on_its_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(isolation, "container_engine", lambda: "podman")
    candidate = tmp_path / "candidate"
    shutil.copytree(BROKEN, candidate, ignore=shutil.ignore_patterns("__pycache__"))
    with isolation.Jail.create("docker", candidate, CORPUS, memory_mb=2048) as jail:
        argv, env, _ = jail.command(["python", "-m", "grader.worker"], {"RAGKATA_GRADER_LLM_KEY": "sk-secret"})
    joined = " ".join(argv)
    assert argv[:2] == ["podman", "run"] and "--network none" in joined and "--memory 2048m" in joined
    assert "sk-secret" not in joined and env["RAGKATA_GRADER_LLM_KEY"] == "sk-secret"  # passed as -e NAME only
    assert f"{isolation.INSIDE_CODE}:ro" in joined and f"{CORPUS.resolve()}:{isolation.INSIDE_CORPUS}:ro" in joined
    assert str(isolation.INTERVIEWER_ROOT) + ":" not in joined  # this repository is never mounted


@pytest.mark.skipif(isolation.container_engine() is None, reason="neither Docker nor Podman answers here")
def test_a_container_jail_answers_through_the_projects_image(tmp_path, monkeypatch):
    engine = isolation.container_engine()
    if subprocess.run([engine, "image", "inspect", isolation.DEFAULT_IMAGE], capture_output=True).returncode != 0:
        pytest.skip(f"no {isolation.DEFAULT_IMAGE!r} image: {engine} build -t {isolation.DEFAULT_IMAGE} .")
    card = grade_broken(tmp_path, monkeypatch, isolation="docker")
    assert card.inputs["isolation"]["level"] == "docker" and card.sides["candidate"].build is not None


def test_a_reference_that_never_builds_is_named_at_the_top_and_flags_nothing(tmp_path, monkeypatch):
    card = grade_broken(tmp_path, monkeypatch, holdout=GOLDEN, reference="no_such_reference_package")
    assert card.sides["reference"].build is None
    assert any(alert.startswith("the reference pipeline failed to build") for alert in card.alerts)
    assert all(row["flagged"] is None for row in card.headline["rows"])
    assert "the reference pipeline failed to build" in (tmp_path / "out" / "scorecard.md").read_text().split("# ragkata")[0]
