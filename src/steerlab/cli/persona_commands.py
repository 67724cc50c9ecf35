"""`steerlab persona ...`: model diffing over SAE latents, and validation of latents by steering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from steerlab.errors import SteerlabError
from steerlab.progress import console

persona_app = typer.Typer(help="Persona features: diff a base and a tuned model over SAE latents.", no_args_is_help=True)


def _responses(path: Optional[Path], n: int) -> Optional[list]:
    """Responses from a JSON list of strings, a .jsonl of {"response": ...}, or a previous diff.json (its exact
    token ids); None when no file is given."""
    if path is None:
        return None
    if not path.is_file():
        raise SteerlabError(f"Response file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        items = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise SteerlabError(f"Response file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
    if isinstance(items, dict) and isinstance(items.get("response_ids"), list):
        items = items["response_ids"]
        if len(items) != n:
            raise SteerlabError(f"{path} has {len(items)} responses for {n} prompts; pass the same prompts it was made with.")
        return items
    if not isinstance(items, list):
        raise SteerlabError(f"Response file {path} must hold a JSON list of responses.")
    out = [item.get("response") if isinstance(item, dict) else item for item in items]
    if not all(isinstance(r, str) for r in out):
        raise SteerlabError(f"Response file {path} has an entry that is neither a string nor an object with a 'response' string.")
    if len(out) != n:
        raise SteerlabError(f"Response file {path} has {len(out)} responses for {n} prompts; give one per prompt.")
    return out


@persona_app.command("diff")
def diff_cmd(
    base: str = typer.Argument(..., help="Base model: packaged alias, .gguf, local folder or hub id."),
    tuned: str = typer.Argument(..., help="Fine-tuned model (same architecture and tokenizer)."),
    sae: str = typer.Option(..., "--sae", help="SAE folder or file (trained on the base model's layer)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", "-p", help=".txt (one per line), .json or .jsonl prompts (default: the built-in evaluation prompts)."),
    responses: Optional[Path] = typer.Option(None, "--responses", help="Fixed responses, one per prompt (JSON list, .jsonl, or a previous diff.json); default: the base model's greedy answers."),
    out: Path = typer.Option(Path("persona-diff"), "--out", "-o", help="Output folder (latents.csv, diff.json, report.html)."),
    rank_by: str = typer.Option("mean", "--rank-by", help="mean | freq | effect."),
    top: int = typer.Option(20, "--top", help="Latents shown in the report and summary."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Length of the base model's answers."),
    batch_size: int = typer.Option(8, "--batch-size"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labels.csv from 'steerlab sae inspect' (default: the one beside the SAE folder, if any)."),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Rank SAE latents by their change from BASE to TUNED over the same response tokens."""
    import steerlab
    from steerlab.persona import diff_models, load_prompts
    from steerlab.persona.diff import RANK_KEYS
    from steerlab.persona.report import default_labels_path, load_labels, write_diff
    from steerlab.sae import load_sae

    if rank_by not in RANK_KEYS:
        raise SteerlabError(f"Unknown ranking '{rank_by}'; choose one of: {', '.join(RANK_KEYS)}.")
    if top < 1:
        raise SteerlabError("--top must be at least 1.")
    prompt_list = load_prompts(prompts)
    fixed = _responses(responses, len(prompt_list))
    label_map = load_labels(labels if labels is not None else default_labels_path(sae))
    s = load_sae(sae)
    base_model = steerlab.load(base)
    s.check_fits(base_model)
    tuned_model = steerlab.load(tuned)
    result = diff_models(base_model, tuned_model, s, prompt_list, fixed, rank_by=rank_by, max_new_tokens=max_new_tokens,
                         chat=False if raw else None, batch_size=batch_size, progress=True)
    paths = write_diff(result, out, top=top, labels=label_map)
    from rich.table import Table

    table = Table(title=f"top {min(top, 10)} latents by {rank_by} (FVU base {result.fvu_base:.3g}, tuned {result.fvu_tuned:.3g})")
    for col in ("rank", "latent", "d_mean", "d_freq", "effect", "label"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for r in result.top(min(top, 10)):
        table.add_row(f"#{r.rank}", str(r.latent), f"{r.delta_mean:.4g}", f"{r.delta_freq:.3g}", f"{r.effect_size:.3g}",
                      label_map.get(r.latent, ""))
    console.print(table)
    console.print(f"{result.n_prompts} prompts, {result.n_tokens} response tokens; wrote {paths['csv']}, {paths['json']} and {paths['html']}")


def _strengths(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SteerlabError(f"--strengths must be comma-separated numbers such as 0,0.2,0.4, got '{text}'.") from exc
    if not values:
        raise SteerlabError("Give at least one steering strength with --strengths (in units of the median residual norm).")
    return values


@persona_app.command("validate")
def validate_cmd(
    model: str = typer.Argument(..., help="Model to steer (usually the base model)."),
    sae: str = typer.Option(..., "--sae", help="SAE folder or file whose latents are steered."),
    latent: List[int] = typer.Option(..., "--latent", "-l", help="SAE latent id to steer along (repeatable)."),
    strengths: str = typer.Option("0,0.1,0.2,0.4", "--strengths", help="Comma-separated multiples of the median residual norm (negative = against the latent)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", "-p", help="Prompt file (default: the built-in held-out prompts)."),
    samples: int = typer.Option(1, "--samples", help="Answers per prompt and strength."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature"),
    seed: int = typer.Option(0, "--seed"),
    judge: str = typer.Option("openai", "--judge", help="openai | anthropic: the persona rubric needs an LLM judge."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Judge model id."),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="Judge server base URL (OpenAI-compatible or Anthropic)."),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env", help="Environment variable holding the judge's API key."),
    max_incoherence: float = typer.Option(0.1, "--max-incoherence", help="Incoherence budget for the verdict."),
    out: Path = typer.Option(Path("persona-validate"), "--out", "-o", help="Output folder (validation.json, report.html)."),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Steer MODEL along each latent at several strengths and grade the answers with the persona rubric."""
    import steerlab
    from steerlab.judges import PersonaJudge
    from steerlab.judges.backends import AnthropicBackend, OpenAIBackend
    from steerlab.persona import HELD_OUT_PROMPTS, load_prompts, median_residual_norm, steer_sweep
    from steerlab.persona.report import write_validation
    from steerlab.sae import load_sae

    values = _strengths(strengths)
    name = judge.strip().lower()
    if name not in ("openai", "anthropic"):
        raise SteerlabError(f"The persona rubric needs an LLM judge: pass --judge openai or --judge anthropic (got '{judge}').")
    backend = (OpenAIBackend if name == "openai" else AnthropicBackend)(judge_model or "", judge_url, judge_key_env)
    prompt_list = load_prompts(prompts) if prompts is not None else list(HELD_OUT_PROMPTS)
    s = load_sae(sae)
    for lat in latent:
        s.check_latent(lat)
    backend.check()  # an unreachable server or a missing key fails here, before any generation
    m = steerlab.load(model)
    s.check_fits(m)
    chat = False if raw else None
    norm = median_residual_norm(m, prompt_list, s.layer, s.site, chat=chat)
    rater = PersonaJudge(backend)
    results = [
        steer_sweep(m, s, lat, values, prompt_list, rater, median_norm=norm, samples=samples, max_new_tokens=max_new_tokens,
                    temperature=temperature, seed=seed, chat=chat, progress=True)
        for lat in latent
    ]
    paths = write_validation(results, out, max_incoherence)
    from rich.table import Table

    table = Table(title=f"steering validation (median residual norm {norm:.4g}, judge {rater.judge_id})")
    for col in ("latent", "strength", "misaligned", "incoherent", "rated"):
        table.add_column(col, justify="right")
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    for v in results:
        for p in v.points:
            table.add_row(str(v.latent), f"{p.strength:g}", fmt(p.misalignment_rate), fmt(p.incoherent_rate), str(p.n_rated))
    console.print(table)
    console.print(f"wrote {paths['json']} and {paths['html']}")


def register(app: typer.Typer) -> None:
    """Attach `steerlab persona ...` to the root app."""
    app.add_typer(persona_app, name="persona")
