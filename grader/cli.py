"""The `ragkata-grader` command, the interviewer's: grade a candidate, and export the copy they receive.

A few lines per command, each calling grader/; user errors print one line and exit 2, exactly as in
`ragkata` (harness/cli.py), whose options and error handling it reuses.
Left out on purpose: the candidate's commands (eval, compare, ask, ...), which stay in `ragkata`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from harness.cli import CORPUS, console, run_app
from harness.progress import Display

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="ragkata-grader: grade a candidate's pipeline and export the candidate's copy of the repository.")


@app.command("grade")
def grade_command(
    candidate: Path = typer.Option(Path("."), "--candidate", help="the candidate's repository (the folder holding exercise/)"),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="held-back golden file (default: golden_set/holdout.jsonl when it exists)"),
    out: Path = typer.Option(Path("scorecard"), "--out", help="folder for scorecard.{json,md,html}, runs/ and logs/"),
    dev: Path = typer.Option(Path("golden_set/dev.jsonl"), "--dev", help="dev golden file (the candidate's)"),
    corpus: Path = CORPUS,
    reference: str = typer.Option("grader.solutions", "--reference", help="package of the reference pipeline"),
    config: Optional[List[str]] = typer.Option(None, "--config", help="override a field of the candidate's Config, name=value"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds allowed per question; a slower answer is a scored "
                                            "failure (default 30; for a generator=llm side 30 + 3 × its llm_timeout_s + 3)"),
    llm_base_url: Optional[str] = typer.Option(None, "--llm-base-url", help="OpenAI-compatible endpoint a generator=llm side "
                                               "calls (default: that side's Config llm_base_url)"),
    llm_model: Optional[str] = typer.Option(None, "--llm-model", help="model name sent to it (default: the Config's llm_model)"),
    llm_api_key_env: Optional[str] = typer.Option(None, "--llm-api-key-env", help="NAME of your environment variable holding "
                                                  "the endpoint's key (default: your Config's llm_api_key_env)"),
    memory_mb: int = typer.Option(6144, "--memory-mb", help="address-space cap per pipeline worker in MB (0 = none; not enforced on macOS)"),
    build_timeout: float = typer.Option(900.0, "--build-timeout", help="seconds allowed for each pipeline's build (a cold "
                                        "dense build embeds the corpus; what it embedded is kept for the next grade)"),
    side_timeout: float = typer.Option(3600.0, "--side-timeout", help="seconds allowed for each side's whole run; "
                                       "questions left then are scored as not run"),
    isolation: str = typer.Option("auto", "--isolation", help="how the candidate's code is confined: bwrap (Linux), "
                                  "docker (the project's image, Docker or Podman), none (unconfined, and the scorecard "
                                  "says so), or auto: bwrap, else docker, else refuse"),
    ratings: Optional[Path] = typer.Option(None, "--ratings", help="your ratings, from ratings.template.json in --out"),
    render_only: bool = typer.Option(False, "--render-only", help="fold --ratings into the scorecard in --out without re-running"),
    skip_tests: bool = typer.Option(False, "--skip-tests", help="do not run the candidate's own tests"),
) -> None:
    """Grade a candidate: starter, candidate and reference on dev and holdout, side by side, into --out.

    Example: ragkata-grader grade --candidate ../alice-ragkata --out scorecards/alice
    Then rate: ragkata-grader grade --out scorecards/alice --ratings alice-ratings.json --render-only
    With a language model, on your endpoint and key (the key is read from the variable, never from a flag):
    RAGKATA_LLM_API_KEY=... ragkata-grader grade --candidate ../alice-ragkata --config generator=llm \\
        --llm-base-url http://127.0.0.1:8081/v1 --llm-model smollm2-135m-instruct
    """
    from grader.grade import FILES, fold_ratings, grade
    from grader.sandbox import Limits, interviewer_endpoint

    if render_only:
        if ratings is None:
            raise ValueError("--render-only folds a ratings file into an existing scorecard; pass --ratings FILE too")
        fold_ratings(out, ratings)
    else:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"--timeout {timeout:g} is not a positive number of seconds; example: --timeout 60")
        for flag, value in (("--build-timeout", build_timeout), ("--side-timeout", side_timeout)):
            if not value > 0:
                raise ValueError(f"{flag} {value:g} is not a positive number of seconds; example: {flag} 1800")
        bounds = dict(memory_mb=memory_mb, build_timeout_s=build_timeout, side_timeout_s=side_timeout)
        limits = (Limits(**bounds) if timeout is None  # a generator=llm side then gets a longer limit
                  else Limits(timeout_s=timeout, llm_timeout_s=timeout, **bounds))
        endpoint = interviewer_endpoint(llm_base_url, llm_model, llm_api_key_env, config or [])
        default_holdout = Path("golden_set/holdout.jsonl")
        holdout = holdout or (default_holdout if default_holdout.is_file() else None)
        with Display(console) as display:  # a live bar per side, or plain lines every few seconds when piped
            steps: dict = {}

            def advance(side: str, done: int, total: int) -> None:
                embedding = side.endswith(": embedding")  # a side's worker embedding, before its first answer
                step = steps.get(side)
                if step is None or (embedding and (step.finished is not None or total != step.total or done < step.done)):
                    # a side is announced with 0 done while its worker builds the pipeline (a cold build embeds)
                    step = steps[side] = display.step(side, total=total, unit="chunks" if embedding else "questions",
                                                      state="" if embedding else "building the pipeline")
                step.update(done, total, state="" if done else None)
                if done >= total:
                    step.finish()

            card = grade(candidate, out, dev, holdout, corpus, reference, config or [], limits,
                         ratings, run_tests=not skip_tests, progress=advance, endpoint=endpoint, isolation=isolation)
        for side, info in card.sides.items():
            for incident in info.incidents:
                console.print(f"[red]{incident.splitlines()[0]}[/red]", markup=True, highlight=False)
    console.print(f"wrote {', '.join(str(out / name) for name in FILES)}")


@app.command("export-candidate")
def export_command(directory: Path = typer.Argument(..., help="new or empty folder for the candidate's copy"),
                   source: Path = typer.Option(Path(__file__).resolve().parents[1], "--source", hidden=True)) -> None:
    """Write the repository as the candidate receives it: no grader/, no holdout, no tests that need them.

    Example: ragkata-grader export-candidate ../ragkata-for-alice
    """
    from grader.export import HELD_BACK, export_candidate

    result = export_candidate(source, directory)
    console.print(f"wrote {result.files} files to {result.directory} (one commit, {result.commit[:7]}); held back "
                  f"{len(result.held_back)} tracked files ({', '.join(HELD_BACK)})")
    if result.trimmed:
        console.print(f"dropped interviewer-only lines from: {', '.join(result.trimmed)}")
    if result.uncommitted:
        console.print(f"[yellow]exported as on disk, uncommitted: {', '.join(result.uncommitted)}[/yellow]")


def main() -> None:
    """Entry point of `ragkata-grader`."""
    run_app(app)


if __name__ == "__main__":
    main()
