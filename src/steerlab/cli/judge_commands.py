"""`steerlab judge ...`: grade one response, grade a stored run, compare judges, calibrate the heuristic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from steerlab.errors import SteerlabError

judge_app = typer.Typer(
    help="Grade responses with a judge (heuristic offline default, openai-compatible, anthropic).", no_args_is_help=True
)

JudgeOpt = typer.Option("heuristic", "--judge", "-j", help="heuristic | heuristic-phrases | openai | anthropic")
ModelOpt = typer.Option(None, "--judge-model", help="Full, pinned judge model id (LLM judges).")
UrlOpt = typer.Option(
    None, "--judge-url", help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."
)
KeyOpt = typer.Option(
    None, "--judge-key-env", help="Name of the environment variable holding the API key (never the key)."
)
ConcOpt = typer.Option(4, "--concurrency", min=1, help="LLM judge calls in flight at once.")
RateOpt = typer.Option(None, "--rate", help="Most LLM judge calls started per second.")
RetryOpt = typer.Option(5, "--retries", min=0, help="Retries on timeouts, 429 and 5xx.")
TimeoutOpt = typer.Option(120.0, "--timeout", help="Seconds per judge call.")
MaxTokOpt = typer.Option(1024, "--judge-max-tokens", min=1, help="Most tokens an LLM judge may write per grade.")
RubricOpt = typer.Option(
    "faithful",
    "--rubric",
    help="LLM judges: 'faithful' (the original judge's content in our words, esr-faithful-v1) or 'today' (esr-attempts-v1).",
)
AnchorsOpt = typer.Option(
    False, "--anchors/--no-anchors", help="LLM judges, faithful rubric: add 100/50/0 score anchors."
)
TempOpt = typer.Option(
    None, "--judge-temperature", help="LLM judges: sampling temperature (default: none sent, the provider's default)."
)


def build_judge(
    name: str,
    model: Optional[str],
    url: Optional[str],
    key_env: Optional[str],
    concurrency: int = 4,
    rate: Optional[float] = None,
    retries: int = 5,
    timeout: float = 120.0,
    max_tokens: int = 1024,
    check: bool = True,
    rubric: str = "faithful",
    anchors: bool = False,
    temperature: Optional[float] = None,
):
    """A judge from CLI options, checked (reachable, key accepted) before any work starts."""
    from steerlab.judges import make_judge

    judge = make_judge(
        name,
        model,
        url,
        key_env,
        concurrency=concurrency,
        rate_per_s=rate,
        max_retries=retries,
        timeout=timeout,
        max_tokens=max_tokens,
        rubric=rubric,
        anchors=anchors or None,
        temperature=temperature,
    )
    if check:
        judge.check()
    return judge


def _print_grade(grade, as_json: bool) -> None:
    from rich.table import Table

    from steerlab.cli.show import out

    if as_json:
        typer.echo(json.dumps(grade.to_dict(), indent=2, ensure_ascii=False))
        return
    if grade.error:
        typer.echo(f"grade error: {grade.error}")
        return
    table = Table(title=f"{len(grade.attempts)} attempt(s) - {grade.judge_id}")
    table.add_column("#")
    table.add_column("score", justify="right")
    table.add_column("attempt")
    for i, a in enumerate(grade.attempts, 1):
        table.add_row(str(i), f"{a.score:g}", a.text[:160])
    out.print(table)


@judge_app.command("grade")
def grade_cmd(
    prompt: str = typer.Option(..., "--prompt", "-p", help="The prompt the model answered."),
    response: Optional[str] = typer.Option(None, "--response", "-r", help="The model's response text."),
    response_file: Optional[Path] = typer.Option(None, "--response-file", help="Read the response from a file."),
    label: str = typer.Option("", "--label", help="The steering label (the unrelated topic)."),
    judge: str = JudgeOpt,
    judge_model: Optional[str] = ModelOpt,
    judge_url: Optional[str] = UrlOpt,
    judge_key_env: Optional[str] = KeyOpt,
    retries: int = RetryOpt,
    timeout: float = TimeoutOpt,
    max_tokens: int = MaxTokOpt,
    rubric: str = RubricOpt,
    anchors: bool = AnchorsOpt,
    judge_temperature: Optional[float] = TempOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the grade as JSON."),
) -> None:
    """Grade one response: split it into attempts and score each 0-100."""
    if (response is None) == (response_file is None):
        raise SteerlabError("Give the response with exactly one of --response or --response-file.")
    if response_file is not None:
        from steerlab.paths import read_text

        response = read_text(response_file, "response file")
    j = build_judge(
        judge,
        judge_model,
        judge_url,
        judge_key_env,
        1,
        None,
        retries,
        timeout,
        max_tokens,
        rubric=rubric,
        anchors=anchors,
        temperature=judge_temperature,
    )
    _print_grade(j.grade(prompt, response or "", label), as_json)


def _open_run(run_dir: Path):
    from steerlab.store import RunStore

    return RunStore(run_dir, create=False)


@judge_app.command("run")
def run_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory holding run.sqlite."),
    judge: str = JudgeOpt,
    judge_model: Optional[str] = ModelOpt,
    judge_url: Optional[str] = UrlOpt,
    judge_key_env: Optional[str] = KeyOpt,
    concurrency: int = ConcOpt,
    rate: Optional[float] = RateOpt,
    retries: int = RetryOpt,
    timeout: float = TimeoutOpt,
    max_tokens: int = MaxTokOpt,
    rubric: str = RubricOpt,
    anchors: bool = AnchorsOpt,
    judge_temperature: Optional[float] = TempOpt,
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Reuse grades from the grade cache."),
) -> None:
    """Grade every response in a run that this judge has not graded yet (failed grades are retried).

    The judge sees the question the run's config names (ESR: --judge-prompt), as `steerlab esr run` does."""
    from steerlab.judges import CachedJudge, GradeCache
    from steerlab.judges.runner import grade_run
    from steerlab.store.runstore import MAX_GRADE_TRIES

    j = build_judge(
        judge,
        judge_model,
        judge_url,
        judge_key_env,
        concurrency,
        rate,
        retries,
        timeout,
        max_tokens,
        rubric=rubric,
        anchors=anchors,
        temperature=judge_temperature,
    )
    if cache:
        j = CachedJudge(j, GradeCache())
    with _open_run(run_dir) as store:
        summary = grade_run(store, j, progress=True, check=False)
        counts = store.grade_counts(j.judge_id, j.rubric_version)
    typer.echo(f"{summary.judge_id}: {summary.graded} graded, {summary.errors} errors (of {summary.attempted} to do)")
    typer.echo(
        f"{counts['graded']} of {counts['generated']} trials graded; {counts['failed']} failed (retried on the next run), "
        f"{counts['abandoned']} abandoned after {MAX_GRADE_TRIES} failed tries."
    )
    if counts["failed"]:
        typer.echo("Run the same command again to retry the failed grades.")


@judge_app.command("compare")
def compare_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory holding run.sqlite."),
    judge: str = JudgeOpt,
    judge_model: Optional[str] = ModelOpt,
    judge_url: Optional[str] = UrlOpt,
    judge_key_env: Optional[str] = KeyOpt,
    concurrency: int = ConcOpt,
    rate: Optional[float] = RateOpt,
    retries: int = RetryOpt,
    timeout: float = TimeoutOpt,
    max_tokens: int = MaxTokOpt,
    rubric: str = RubricOpt,
    anchors: bool = AnchorsOpt,
    judge_temperature: Optional[float] = TempOpt,
    against: Optional[str] = typer.Option(
        None, "--against", help="Judge id already in the run to compare with (default: every other)."
    ),
) -> None:
    """Re-grade a run with another judge and report agreement with the judges already there."""
    from steerlab.judges.runner import compare_judges, grade_run

    j = build_judge(
        judge,
        judge_model,
        judge_url,
        judge_key_env,
        concurrency,
        rate,
        retries,
        timeout,
        max_tokens,
        rubric=rubric,
        anchors=anchors,
        temperature=judge_temperature,
    )
    with _open_run(run_dir) as store:
        others = [jr for jr in store.judges() if jr[0] != j.judge_id and (against is None or jr[0] == against)]
        if not others:
            raise SteerlabError(
                f"The run in {run_dir} has no grades from another judge{f' named {against}' if against else ''}; grade it first with `steerlab judge run`."
            )
        summary = grade_run(store, j, progress=True, check=False)
        typer.echo(f"{summary.judge_id}: {summary.graded} newly graded, {summary.errors} errors")
        for other in others:
            typer.echo(json.dumps(compare_judges(store, (j.judge_id, j.rubric_version), other), indent=2))


@judge_app.command("calibrate")
def calibrate_cmd() -> None:
    """Score the heuristic judge on hand-written on-topic vs off-topic answers and print the separation."""
    from steerlab.judges.heuristic import calibration_report

    typer.echo(json.dumps(calibration_report(), indent=2))


@judge_app.command("validate")
def validate_cmd(
    judge: str = JudgeOpt,
    judge_model: Optional[str] = ModelOpt,
    judge_url: Optional[str] = UrlOpt,
    judge_key_env: Optional[str] = KeyOpt,
    concurrency: int = ConcOpt,
    rate: Optional[float] = RateOpt,
    retries: int = RetryOpt,
    timeout: float = TimeoutOpt,
    max_tokens: int = MaxTokOpt,
    rubric: str = RubricOpt,
    anchors: bool = AnchorsOpt,
    judge_temperature: Optional[float] = TempOpt,
    set_file: Optional[Path] = typer.Option(
        None, "--set", help="A validation set as JSONL (default: the project's packaged set)."
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="Grade only N rows, spread evenly over the set (every category)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Also write the full report (per phrasing, misses) as JSON here."
    ),
) -> None:
    """Validate a judge on the project's set: attempt-count accuracy, held-out restart recall, false restarts, score correlation."""
    from rich.console import Console
    from rich.table import Table

    from steerlab.judges.validation import load_set, validate

    rows = load_set(set_file)  # a malformed set fails here, before the judge is built or called
    total = len(rows)
    if limit is not None and limit < total:
        rows = [rows[i * total // limit] for i in range(limit)]
    j = build_judge(
        judge,
        judge_model,
        judge_url,
        judge_key_env,
        concurrency,
        rate,
        retries,
        timeout,
        max_tokens,
        rubric=rubric,
        anchors=anchors,
        temperature=judge_temperature,
    )
    report = validate(j, rows, progress=True)
    if set_file is None:
        from steerlab.judges.validation import SET_VERSION

        report["set"] = SET_VERSION if len(rows) == total else f"{SET_VERSION} ({len(rows)} of {total} rows)"
    table = Table(
        title=f"judge validation: {report['judge']} ({report['rubric']}), {report['n']} answers, {report['errors']} errors"
    )
    for h in ("measure", "value"):
        table.add_column(h)
    for key in ("attempt_accuracy", "restart_recall", "false_restart_rate", "first_score_r", "attempt_score_r"):
        value = report[key]
        table.add_row(key, "n/a" if value is None else f"{value:.3f}")
    Console(width=110).print(table)
    cats = Table(title="attempt-count accuracy by category")
    for h in ("category", "n", "correct", "errors"):
        cats.add_column(h)
    for name, c in report["per_category"].items():
        cats.add_row(name, str(c["n"]), str(c["correct"]), str(c["errors"]))
    Console(width=110).print(cats)
    if report["missed_phrasings"]:
        typer.echo(
            "missed restart phrasings (recalled/used): "
            + "; ".join(f"{p!r} {report['phrase_recall'][p]}" for p in report["missed_phrasings"])
        )
    if out is not None:
        from steerlab.judges.validation.core import write_json

        typer.echo(f"report: {write_json(report, out).resolve()}")


@judge_app.command("validation-set")
def validation_set_cmd(
    out: Path = typer.Argument(..., help="Where to write the project's validation set (JSONL)."),
) -> None:
    """Write the project's judge-validation set as JSONL (to inspect it, or to edit and pass back with --set)."""
    from steerlab.judges.validation import build_set, write_set

    rows = build_set()
    typer.echo(f"wrote {len(rows)} rows to {write_set(rows, out).resolve()}")


def register(app: typer.Typer) -> None:
    app.add_typer(judge_app, name="judge")
