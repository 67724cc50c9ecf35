"""Core commands: generate, tokens, models, vectors train, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from steerlab.cli import show
from steerlab.cli.show import console
from steerlab.errors import SteerlabError
from steerlab.paths import read_text, write_text


def _read_prompts(prompts: list[str] | None, prompts_file: Path | None) -> list[str]:
    """Prompts from --prompt options and/or a file (one per line, or JSONL with a 'prompt' field)."""
    items = list(prompts or [])
    if prompts_file is not None:
        items += read_text_list(prompts_file, "prompt")
    if not items:
        raise SteerlabError("No prompts given; pass --prompt TEXT or --prompts-file FILE.")
    if any(not p.strip() for p in items):
        raise SteerlabError("A prompt is empty; give each prompt some text.")
    return items


def read_text_list(path: Path, field: str = "prompt") -> list[str]:
    """Lines of a text file, or a field of each JSONL record."""
    lines = [line for line in read_text(path, "prompts file").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise SteerlabError(f"Line {n} of {path} is not valid JSON.") from None
            if field not in record:
                raise SteerlabError(f"Line {n} of {path} has no '{field}' field.")
            out.append(str(record[field]))
        lines = out
    if not lines:
        raise SteerlabError(f"File {path} holds no prompts.")
    return lines


def generate_cmd(
    model: str = typer.Argument(..., help="Packaged alias, .gguf file, local folder or Hugging Face id."),
    prompt: Optional[List[str]] = typer.Option(None, "--prompt", "-p", help="A prompt (repeatable)."),
    prompts_file: Optional[Path] = typer.Option(
        None, "--prompts-file", help="One prompt per line, or JSONL with 'prompt'."
    ),
    steer: Optional[List[str]] = typer.Option(
        None, "--steer", "-s", help="e.g. vector=joy.safetensors,strength=6 (repeatable; see docs)."
    ),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(0.0, help="0 is greedy."),
    top_p: float = typer.Option(1.0),
    top_k: int = typer.Option(0),
    repetition_penalty: float = typer.Option(1.0),
    seed: int = typer.Option(0, help="Row i gets seed + i."),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
    compare: bool = typer.Option(False, "--compare", help="Also generate without steering and show both."),
    show_tokens: bool = typer.Option(False, "--show-tokens", help="Print the exact token ids each prompt becomes."),
    dtype: str = typer.Option("float32"),
    device: str = typer.Option("cpu"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write results as JSONL here."),
) -> None:
    """Generate text, optionally steered; `--compare` shows steered and unsteered side by side."""
    from steerlab.engine.generate import generate
    from steerlab.interventions.parse import build_intervention, parse_steer
    from steerlab.models.loading import load
    from steerlab.vectors.concept import ConceptVector

    prompts = _read_prompts(prompt, prompts_file)
    specs = [parse_steer(s) for s in steer or []]  # form errors surface before any model work
    from steerlab.engine.sampling import Sampling
    from steerlab.errors import check_number

    Sampling(temperature, top_p, top_k, repetition_penalty)  # NaN, infinity and out-of-range values: one sentence
    check_number(seed, "--seed", 0, 2**31 - 1)
    check_number(max_new_tokens, "--max-new-tokens", 1, 1_000_000)
    lm = load(model, dtype=dtype, device=device)
    interventions = [build_intervention(s, lm, load_vector=ConceptVector.load) for s in specs]
    from steerlab.interventions.hooks import Session

    Session(lm, interventions)  # checks layers, widths and latent ids before generating
    chat = False if raw else None
    if show_tokens:
        for p in prompts:
            console.print(f"{p!r} -> {lm.encode(p, chat=chat)}")
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
        chat=chat,
        progress=True,
    )
    steered = generate(lm, prompts, interventions, **kwargs)
    plain = generate(lm, prompts, **kwargs) if compare and interventions else None
    if out is not None:  # written before anything is printed: a printing problem never loses the results
        rows = []
        for i, g in enumerate(steered):
            row = {
                "prompt": prompts[i],
                "text": g.text,
                "token_ids": g.token_ids,
                "finish_reason": g.finish_reason,
                "seed": g.seed,
                "steering": [s.text for s in specs],
            }
            if plain is not None:
                row["unsteered_text"] = plain[i].text
            rows.append(json.dumps(row) + "\n")
        write_text(out, "".join(rows))
    _print_generations(prompts, steered, plain, bool(interventions))
    if out is not None:
        console.print(f"wrote {out}")


def _print_generations(prompts, steered, plain, is_steered: bool) -> None:
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("prompt", style="bold", max_width=30)
    if plain is not None:
        table.add_column("unsteered")
    table.add_column("steered" if is_steered else "answer")
    for i, p in enumerate(prompts):
        cells = [p] + ([plain[i].text] if plain is not None else []) + [steered[i].text]
        table.add_row(*cells)
    show.out.print(table)


def tokens_cmd(
    model: str = typer.Argument(..., help="Model to tokenise with."),
    prompt: str = typer.Argument(..., help="The prompt."),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Show the exact token ids (and token strings) a prompt becomes."""
    from steerlab.models.loading import load

    lm = load(model)
    for i, (tid, text) in enumerate(lm.show_tokens(prompt, chat=False if raw else None)):
        print(f"{i:4d} {tid:8d} {text!r}")


def models_cmd() -> None:
    """List packaged offline models and models already in the caches."""
    from rich.table import Table

    from steerlab.models.gguf_cache import cache_root
    from steerlab.models.packaged import PACKAGED, is_installed

    table = Table(title="packaged models")
    for col in ("alias", "description", "installed"):
        table.add_column(col)
    for alias, entry in PACKAGED.items():
        table.add_row(alias, entry.description, "yes" if is_installed(alias) else f"no: pip install {entry.pip_name}")
    out = show.out
    out.print(table)
    converted = (
        sorted(p.name for p in (cache_root() / "models").glob("*") if p.is_dir())
        if (cache_root() / "models").is_dir()
        else []
    )
    out.print(f"converted GGUF models in {cache_root() / 'models'}: {', '.join(converted) or 'none'}")
    try:
        from huggingface_hub import scan_cache_dir

        repos = [r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model"]
    except Exception:  # no cache folder yet
        repos = []
    out.print(f"Hugging Face cache: {', '.join(sorted(repos)) or 'empty'}")


vectors_app = typer.Typer(help="Concept vectors from contrastive prompts.", no_args_is_help=True)


@vectors_app.command("train")
def vectors_train_cmd(
    model: str = typer.Argument(..., help="Model to read activations from."),
    positive: Path = typer.Option(..., "--positive", help="Prompts showing the concept (lines or JSONL)."),
    negative: Path = typer.Option(..., "--negative", help="Prompts without it (lines or JSONL)."),
    layer: int = typer.Option(..., "--layer"),
    out: Path = typer.Option(..., "--out", help="Where to write the .safetensors vector."),
    site: str = typer.Option("resid_post"),
    method: str = typer.Option("mean_diff", help="mean_diff or pca."),
    reduce: str = typer.Option("last", help="last prompt token or mean over the prompt."),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Train a concept vector (mean difference or PCA) and save it as safetensors with metadata."""
    from steerlab.models.loading import load
    from steerlab.vectors import train_vector

    pos = read_text_list(positive)
    neg = read_text_list(negative)
    if method not in ("mean_diff", "pca"):
        raise SteerlabError(f"Unknown method '{method}'; choose mean_diff or pca.")
    if reduce not in ("last", "mean"):
        raise SteerlabError(f"Unknown reduce '{reduce}'; choose last or mean.")
    lm = load(model)
    lm.arch.check_layer(layer)
    cv = train_vector(
        lm, pos, neg, layer, site=site, method=method, reduce=reduce, chat=False if raw else None, label=out.stem
    )
    cv.save(out)
    console.print(
        f"saved {out}: layer {layer} {site}, norm {cv.meta['vector_norm']:.2f} "
        f"(median residual norm {cv.meta['resid_norm_median']:.2f})"
    )


def demo_cmd(
    model: str = typer.Option("smollm2-135m-instruct", help="Model to run the demo on."),
    out: Path = typer.Option(Path("runs/demo"), help="Run directory for the report."),
    quick: bool = typer.Option(False, "--quick", help="Smoke-test size (about 3 minutes)."),
) -> None:
    """Run the main job (the ESR experiment) on the embedded default model and print where the report is."""
    from steerlab.demo import run_demo

    run_demo(model, out, quick=quick)


def register(app: typer.Typer) -> None:
    """Attach the core commands to the root app."""
    app.command("generate")(generate_cmd)
    app.command("tokens")(tokens_cmd)
    app.command("models")(models_cmd)
    app.command("demo")(demo_cmd)
    app.add_typer(vectors_app, name="vectors")
