"""`steerlab persona ...`: model diffing over SAE latents (and, later, steering validation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from steerlab.errors import SteerlabError
from steerlab.progress import console

persona_app = typer.Typer(help="Persona features: diff a base and a tuned model over SAE latents.", no_args_is_help=True)


def _responses(path: Optional[Path], n: int) -> Optional[list[str]]:
    """Responses from a JSON list of strings or a .jsonl of {"response": ...}; None when no file is given."""
    if path is None:
        return None
    if not path.is_file():
        raise SteerlabError(f"Response file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        items = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)
    except json.JSONDecodeError as exc:
        raise SteerlabError(f"Response file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
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
    responses: Optional[Path] = typer.Option(None, "--responses", help="Fixed responses, one per prompt (JSON list or .jsonl); default: the base model's greedy answers."),
    out: Path = typer.Option(Path("persona-diff"), "--out", "-o", help="Output folder (latents.csv, diff.json, report.html)."),
    rank_by: str = typer.Option("mean", "--rank-by", help="mean | freq | effect."),
    top: int = typer.Option(20, "--top", help="Latents shown in the report and summary."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Length of the base model's answers."),
    batch_size: int = typer.Option(8, "--batch-size"),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Rank SAE latents by their change from BASE to TUNED over the same response tokens."""
    import steerlab
    from steerlab.persona import diff_models, load_prompts
    from steerlab.persona.diff import RANK_KEYS
    from steerlab.persona.report import write_diff
    from steerlab.sae import load_sae

    if rank_by not in RANK_KEYS:
        raise SteerlabError(f"Unknown ranking '{rank_by}'; choose one of: {', '.join(RANK_KEYS)}.")
    if top < 1:
        raise SteerlabError("--top must be at least 1.")
    prompt_list = load_prompts(prompts)
    fixed = _responses(responses, len(prompt_list))
    s = load_sae(sae)
    base_model = steerlab.load(base)
    s.check_fits(base_model)
    tuned_model = steerlab.load(tuned)
    result = diff_models(base_model, tuned_model, s, prompt_list, fixed, rank_by=rank_by, max_new_tokens=max_new_tokens,
                         chat=False if raw else None, batch_size=batch_size, progress=True)
    paths = write_diff(result, out, top=top)
    from rich.table import Table

    table = Table(title=f"top {min(top, 10)} latents by {rank_by} (FVU base {result.fvu_base:.3g}, tuned {result.fvu_tuned:.3g})")
    for col in ("rank", "latent", "d_mean", "d_freq", "effect"):
        table.add_column(col, justify="right")
    for r in result.top(min(top, 10)):
        table.add_row(f"#{r.rank}", str(r.latent), f"{r.delta_mean:.4g}", f"{r.delta_freq:.3g}", f"{r.effect_size:.3g}")
    console.print(table)
    console.print(f"{result.n_prompts} prompts, {result.n_tokens} response tokens; wrote {paths['csv']}, {paths['json']} and {paths['html']}")


def register(app: typer.Typer) -> None:
    """Attach `steerlab persona ...` to the root app."""
    app.add_typer(persona_app, name="persona")
