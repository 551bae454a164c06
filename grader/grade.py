"""`ragkata-grader grade`: run starter, candidate and reference on dev and holdout, score them here, write the scorecard.

Each pipeline runs in a killable worker (sandbox.py), the candidate's inside a Jail (isolation.py) with a
private copy of their repository, where their own tests run too. Each answer arrives over the worker's
pipe, is scored in this process with harness.scoring.score_sample, kept in memory and appended to
<out>/runs/<side>-<split>/samples.jsonl for the record; the summaries come from memory, never from a
file the candidate could reach. Whatever the candidate's code does, the three scorecard files are
written, signed with a key only the interviewer holds (digest.py), and --render-only refuses a changed
scorecard.json. A side whose Config says generator=llm calls the interviewer's endpoint (sandbox.Endpoint)
under a longer per-question limit, and the notes say so.
Left out on purpose: the layout of the scorecard (render_md.py, render_html.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from grader import changes as changes_mod
from grader import digest
from grader import rubric as rubric_mod
from grader import scorecard as sc
from grader.card import VERSION, Scorecard, Side
from grader.isolation import PROTECTS, Jail, choose
from grader.render_html import render_html
from grader.render_md import render_md
from grader.sandbox import (INTERVIEWER_ROOT, LLM_BACKOFF_S, LLM_TRIES, Endpoint, Limits, Session, Target, endpoint_host,
                            run_target, uses_llm)
from grader.timeline import build_timeline, git, llm_of
from harness.corpus import corpus_hash, load_corpus, read_canaries
from harness.golden import GoldenQuestion, read_golden
from harness.records import Sample
from harness.runner import append_sample, file_sha256, write_json
from harness.scoring import SourceCorpus, score_sample, summarize

FILES = ("scorecard.json", "scorecard.md", "scorecard.html")
# (side, questions done, questions total); and ("<side>: embedding", texts embedded, texts to embed) while the
# side's worker builds, forwarded from its embedding cache for display only
Progress = Callable[[str, int, int], None]
ENDPOINT_FIELDS = ("llm_base_url", "llm_model", "llm_api_key_env")  # the interviewer's to choose when grading


def _targets(candidate: Path, reference: str, config: Sequence[str]) -> dict[str, Target]:
    return {"starter": Target("starter", "exercise", INTERVIEWER_ROOT),
            "candidate": Target("candidate", "exercise", candidate, candidate=True, config=tuple(config)),
            "reference": Target("reference", reference, INTERVIEWER_ROOT)}


def evaluate(target: Target, questions: dict[str, tuple[str, GoldenQuestion]], corpus: Path, sources: SourceCorpus,
             limits: Limits, out: Path, progress: Progress, endpoint: Endpoint = Endpoint(),
             jail: Jail | None = None) -> tuple[Side, dict[str, list[Sample]]]:
    """Run one side over every question, inside `jail` when given; (side info, {split: scored samples}).

    The samples are the ones scored here, in memory; the samples.jsonl files are a record, never read back.
    Never raises for the pipeline.
    """
    folders = {split: out / "runs" / f"{target.label}-{split}" for split in sc.SPLITS}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    (out / "logs").mkdir(exist_ok=True)
    log = out / "logs" / f"{target.label}.log"  # emptied by run_target's CappedLog
    session, done = Session(on_progress=lambda d, t: progress(f"{target.label}: embedding", d, t)), set()
    files = {split: (folder / "samples.jsonl").open("a", encoding="utf-8") for split, folder in folders.items()}
    samples: dict[str, list[Sample]] = {split: [] for split in sc.SPLITS}

    def record(key: str, answer, error: str | None, wall_ms: float) -> None:
        split, question = questions[key]
        sample = score_sample(question, answer, error, sources, wall_ms)
        samples[split].append(sample)
        append_sample(files[split], sample)
        done.add(key)
        progress(target.label, len(done), len(questions))

    progress(target.label, 0, len(questions))  # the side starts: its pipeline builds before the first answer
    try:
        for outcome in run_target(target, [(k, q.question) for k, (_, q) in questions.items()], corpus, limits, log, session,
                                  endpoint, jail):
            record(outcome.key, outcome.answer, outcome.error, outcome.wall_ms)
    except Exception as exc:  # a grader bug or an OS failure: keep what was scored, mark the rest
        why = endpoint.scrub(f"{type(exc).__name__}: {exc}")
        session.incidents.append(f"{target.label}: grading stopped early ({why}); "
                                 "the remaining questions are scored as errors")
        for key in [k for k in questions if k not in done]:
            record(key, None, f"GraderError: {why}", 0.0)
    finally:
        for handle in files.values():
            handle.close()
    for split, folder in folders.items():
        if samples[split]:
            write_json(folder / "summary.json", summarize(samples[split]).to_json())
    side = Side(module=target.module, root=str(target.root), config_overrides=tuple(target.config), build=session.build,
                incidents=tuple(session.incidents), peak_rss_mb=session.peak_rss_mb, timeouts=session.timeouts,
                crashes=session.crashes, not_run=session.not_run,
                errors=sum(s.error is not None for split in sc.SPLITS for s in samples[split]), log=str(log),
                timeout_s=session.timeout_s if session.timeout_s is not None else limits.timeout_s)
    return side, samples


def _guarded(name: str, build: Callable[[], dict]) -> dict:
    """A section computed from the candidate's folder; a failure becomes a line, not a lost report."""
    try:
        return build()
    except Exception as exc:
        return {"error": f"{name} unavailable: {type(exc).__name__}: {exc}"}


def _notes(inputs: Mapping, sides: Mapping[str, Side], summaries: Mapping, timeline: Mapping, holdout: Path | None,
           reference: str, limits: Limits) -> list[str]:
    notes = []
    busy, cpus = inputs["load_average"], inputs["cpu_count"] or 1
    if busy > cpus:
        notes.append(f"the machine was busy while grading (load average {busy:g} on {cpus} CPUs): latency figures are "
                     "unreliable; grade again on a quiet machine before discussing latency")
    if holdout is None:
        notes.append("no holdout file: the holdout columns are empty (pass --holdout golden_set/holdout.jsonl)")
    env = sorted(k for k in os.environ if k.startswith("RAGKATA_") and k not in ("RAGKATA_RUNS_DIR",)
                 and k.removeprefix("RAGKATA_").lower() in _config_fields())
    if env:
        notes.append(f"set in the grader's environment, and applied to every side's Config: {', '.join(env)}")
    if reference != "grader.solutions":
        notes.append(f"reference pipeline: {reference} (not grader.solutions)")
    runs = [r for r in timeline.get("runs", []) if r["complete"]]
    build = sides["candidate"].build
    chosen = build.config if build else {}
    if runs and chosen:
        last = runs[-1]["config"]
        differ = [f"{k}={v}" for k, v in sorted(last.items())
                  if k in chosen and chosen[k] != v and k not in ENDPOINT_FIELDS]
        if differ:
            notes.append(f"the candidate's last run ({runs[-1]['run_id']}) used {', '.join(differ)}, unlike their Config "
                         f"defaults; if that was their final choice, grade again with "
                         + " ".join(f"--config {d}" for d in differ))
    return notes + _llm_notes(inputs, sides, summaries, runs, limits)


def _config_fields() -> set[str]:
    from exercise.config import Config

    return {f.name for f in dataclasses.fields(Config)}


def _llm_notes(inputs: Mapping, sides: Mapping[str, Side], summaries: Mapping, runs: Sequence[Mapping],
               limits: Limits) -> list[str]:
    """What a reader must know about the sides that called a language model, and about the candidate's own runs."""
    notes = []
    config = {side: sides[side].build.config if sides[side].build else {} for side in sc.SIDES}
    llm = [side for side in sc.SIDES if uses_llm(config[side])]
    for side in llm:
        model, host = config[side].get("llm_model"), endpoint_host(config[side].get("llm_base_url"))
        if limits.llm_timeout_s is None and sides[side].timeout_s != limits.timeout_s:
            added = sides[side].timeout_s - limits.timeout_s - LLM_BACKOFF_S
            notes.append(f"{side} generates with a language model ({model} at {host}): its per-question limit was "
                         f"{sides[side].timeout_s:g} s, not {limits.timeout_s:g} s, to leave room for generation "
                         f"({limits.timeout_s:g} s plus {LLM_TRIES} tries of its llm_timeout_s, {added / LLM_TRIES:g} s, "
                         f"and {LLM_BACKOFF_S:g} s of backoff), because --timeout was not given")
        every = summaries[side].get("all")
        hits, questions = (every.llm_cache_hits, every.counts.get("questions", 0)) if every else (0, 0)
        if hits:
            notes.append(f"{side}: {hits} of {questions} answers came from the reply cache under its cache_dir, not "
                         "from the model: their generate latency and cost are not the model's; grade again with "
                         "--config llm_cache=false to call the model for every question")
    key = inputs.get("llm") or {}
    if llm and not key.get("api_key_set"):
        where = f" (${key['api_key_env']} is unset or empty)" if key.get("api_key_env") else ""
        notes.append(f"no API key{where}: the {', '.join(llm)} side(s) called the model without one, which only a "
                     "local server accepts")
    graded = llm_of(config["candidate"])
    used = {}
    for run in runs:
        if run.get("llm") and run["llm"] != graded:
            used.setdefault((run["llm"]["model"], run["llm"]["endpoint"]), []).append(run["run_id"])
    for (model, host), ids in used.items():
        now = f"{graded['model']} at {graded['endpoint']}" if graded else "no language model (generator=" \
              f"{config['candidate'].get('generator', '?')})"
        notes.append(f"the candidate's own runs used {model} at {host} ({len(ids)} run(s), last {ids[-1]}), but they "
                     f"were graded with {now}: numbers from their session and from this scorecard come from "
                     "different models" + ("" if graded else "; grade again with --config generator=llm"))
    return notes


def grade(candidate: Path, out: Path, dev: Path, holdout: Path | None = None, corpus: Path = Path("corpus"),
          reference: str = "grader.solutions", config: Sequence[str] = (), limits: Limits = Limits(),
          ratings: Path | None = None, run_tests: bool = True, tests_timeout_s: float = 600.0,
          progress: Progress = lambda side, done, total: None, endpoint: Endpoint = Endpoint(),
          isolation: str = "auto") -> Scorecard:
    """Grade the candidate folder and write scorecard.{json,md,html} and ratings.template.json into out.

    endpoint: the interviewer's language model, for a side whose Config says generator=llm.
    isolation: how the candidate's code is confined (isolation.choose); IsolationError, before anything
    runs, when it cannot be.
    """
    candidate, out, corpus = candidate.resolve(), out.resolve(), corpus.resolve()
    if not (candidate / "exercise").is_dir():
        raise FileNotFoundError(f"{candidate}: no exercise/ folder; pass --candidate the folder the candidate worked in")
    if INTERVIEWER_ROOT == candidate or candidate in INTERVIEWER_ROOT.parents:
        raise ValueError(f"this grader runs from {INTERVIEWER_ROOT}, inside the candidate's folder {candidate}: their "
                         "copy of grader/ and harness/ would judge them; run ragkata-grader from your own clone and venv")
    rated = rubric_mod.read_ratings(ratings) if ratings else {}
    golden = {"dev": read_golden(dev), "holdout": read_golden(holdout) if holdout else []}
    documents = {d.doc_id: d for d in load_corpus(corpus)}
    sources = SourceCorpus({doc_id: d.text for doc_id, d in documents.items()}, read_canaries(corpus))
    if not golden["dev"]:
        raise ValueError(f"{dev}: no questions; pass --dev a golden file with at least one question")
    questions = {f"{split}/{q.id}": (split, q) for split in sc.SPLITS for q in golden[split]}
    level = choose(isolation)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    sides, samples, load = {}, {}, []
    with Jail.create(level, candidate, corpus, memory_mb=limits.memory_mb, endpoint_url=endpoint.base_url) as jail:
        for side, target in _targets(candidate, reference, config).items():
            load.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
            sides[side], samples[side] = evaluate(target, questions, corpus, sources, limits, out, progress, endpoint,
                                                  jail if target.candidate else None)
        load.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
        tests = (_guarded("tests", lambda: changes_mod.run_candidate_tests(jail, out / "logs" / "tests.log",
                                                                           tests_timeout_s, limits.memory_mb))
                 if run_tests else {"ran": False, "line": "not run (--skip-tests)"})
    summaries = {side: {**{split: summarize(samples[side][split]) if samples[side][split] else None for split in sc.SPLITS},
                        "all": summarize([s for split in sc.SPLITS for s in samples[side][split]])}
                 for side in sc.SIDES}
    by_key = {(split, q.id): q for split, q in questions.values()}
    unbuilt = tuple(side for side in ("starter", "reference") if sides[side].build is None)
    head = git(candidate, "rev-parse", "HEAD")
    inputs = {"dev": {"path": str(dev), "sha256": file_sha256(dev), "questions": len(golden["dev"])},
              "holdout": {"path": str(holdout), "sha256": file_sha256(holdout), "questions": len(golden["holdout"])}
              if holdout else None,
              "corpus": {"path": str(corpus), "sha256": corpus_hash(corpus)},
              "limits": dict(limits.__dict__), "reference": reference, "candidate_config": list(config),
              "isolation": {"level": level, "protects": PROTECTS[level]},
              "load_average": round(max(load), 2), "cpu_count": os.cpu_count(),
              "llm": {"model": endpoint.model, "endpoint": endpoint_host(endpoint.base_url) if endpoint.base_url else None,
                      "api_key_env": endpoint.api_key_env, "api_key_set": bool(endpoint.api_key)}}
    timeline = _guarded("timeline", lambda: build_timeline(candidate))
    timeline.setdefault("runs", [])
    timeline.setdefault("discipline", {"runs": 0})
    card = Scorecard(
        version=VERSION,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        candidate={"dir": str(candidate), "name": candidate.name, "commit": head.strip() if head else None,
                   "dirty": bool((git(candidate, "status", "--porcelain") or "").strip()) if head else None},
        inputs=inputs,
        sides=sides,
        summaries=summaries,
        headline=sc.headline(summaries, samples, unbuilt),
        per_tag=sc.per_tag(summaries),
        failures=sc.failures(samples, by_key, documents, sides["candidate"].timeout_s),
        latency=sc.latency(summaries, samples, sides),
        generation=sc.generation(summaries, sides),
        timeline=timeline,
        changes=_guarded("what changed", lambda: changes_mod.what_changed(candidate, INTERVIEWER_ROOT)),
        tests=tests,
        notes=_notes(inputs, sides, summaries, timeline, holdout, reference, limits),
        alerts=_alerts(level, unbuilt),
        rubric=[], ratings={}, seconds=0.0,  # filled in below: the rubric's evidence reads the sections above
    )
    rubric, totals = rubric_mod.fold(rubric_mod.build_rubric(card), rated)
    card = dataclasses.replace(card, rubric=rubric, ratings={"file": str(ratings) if ratings else None, **totals},
                               seconds=round(time.perf_counter() - started, 1))
    return write(card, out)


def _alerts(level: str, unbuilt: Sequence[str]) -> list[str]:
    """What the reader must see before any number: an unconfined candidate, a baseline that never built."""
    alerts = [PROTECTS["none"]] if level == "none" else []
    for side in unbuilt:
        alerts.append(f"the {side} pipeline failed to build (see its incident below): its columns are errors, and "
                      + ("no gap is flagged against it" if side == "reference" else "no comparison with it means anything"))
    return alerts


def write(card: Scorecard, out: Path) -> list[Path]:
    """Sign the scorecard (digest.sign) and write its three files (and the ratings template) into out."""
    out.mkdir(parents=True, exist_ok=True)
    card = dataclasses.replace(card, digest=digest.sign(card.to_json()))
    (out / "scorecard.json").write_text(json.dumps(card.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "scorecard.md").write_text(render_md(card), encoding="utf-8")
    (out / "scorecard.html").write_text(render_html(card), encoding="utf-8")
    template = out / "ratings.template.json"
    template.write_text(json.dumps(rubric_mod.ratings_template(), indent=2) + "\n", encoding="utf-8")
    return card


def read_scorecard(path: Path) -> Scorecard:
    """Read a scorecard.json; ValueError naming the file and the fix when it is not one this grader wrote."""
    again = f"grade again with `ragkata-grader grade --out {path.parent}`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a scorecard this grader can read ({type(exc).__name__}: {exc}); {again}") from None
    problem = digest.check(data)
    if problem:
        raise ValueError(f"{path}: refused, {problem}; {again}")
    try:
        return Scorecard.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a scorecard this grader can read ({type(exc).__name__}: {exc}); {again}") from None


def fold_ratings(out: Path, ratings: Path) -> Scorecard:
    """Fold a ratings file into an existing scorecard in out and rewrite its files; nothing is re-run."""
    path = out / "scorecard.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no scorecard to fold ratings into; run `ragkata-grader grade --out {out}` first")
    rated = rubric_mod.read_ratings(ratings)
    card = read_scorecard(path)
    rubric, totals = rubric_mod.fold(card.rubric, rated)
    card = dataclasses.replace(card, rubric=rubric, ratings={"file": str(ratings), **totals})
    return write(card, out)
