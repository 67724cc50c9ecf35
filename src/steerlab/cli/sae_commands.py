"""`steerlab sae ...`: train, eval, info, convert, inspect (alias latents) and default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from steerlab.cli.show import console
from steerlab.errors import SteerlabError
from steerlab.paths import write_json

sae_app = typer.Typer(help="Sparse autoencoders: train, evaluate, convert, inspect.", no_args_is_help=True)


def _corpus(corpus: Optional[List[str]]):
    from steerlab.data import load_corpus

    return load_corpus(None if not corpus else list(corpus))


def _table(title: str, rows: dict) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


@sae_app.command("train")
def train_cmd(
    model: str = typer.Argument(..., help="Packaged alias, .gguf file, local folder or Hugging Face id."),
    layer: int = typer.Option(..., "--layer", "-l", help="Decoder layer index (0-based)."),
    site: str = typer.Option("resid_post", help="resid_pre | resid_post | attn_out | mlp_out | head | neuron."),
    arch: str = typer.Option("topk", help="topk | batchtopk | jumprelu | relu."),
    d_sae: Optional[int] = typer.Option(None, "--d-sae", help="Number of latents (default: 8 x width)."),
    k: int = typer.Option(32, "--k", help="Latents per token (TopK / BatchTopK)."),
    tokens: int = typer.Option(1_000_000, "--tokens", help="Training tokens (steps x batch size)."),
    batch_size: int = typer.Option(1024, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    reuse: float = typer.Option(
        1.0, "--reuse", help="Times each harvested activation is used (>1 saves model forwards)."
    ),
    buffer_tokens: int = typer.Option(65_536, "--buffer-tokens"),
    context_len: int = typer.Option(128, "--context-len"),
    l1_coeff: float = typer.Option(0.05, "--l1-coeff", help="ReLU: L1 weight."),
    l0_coeff: float = typer.Option(2e-3, "--l0-coeff", help="JumpReLU: L0 weight."),
    corpus: Optional[List[str]] = typer.Option(
        None,
        "--corpus",
        "-c",
        help="Text/JSONL/Parquet files or folders, or hf:DATASET (default: the built-in offline corpus).",
    ),
    out: Path = typer.Option(Path("sae-out"), "--out", "-o", help="Output folder (SAE folder, plot, metrics)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from out/checkpoint.pt if present."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate on held-out text afterwards."),
    seed: int = typer.Option(0),
) -> None:
    """Train an SAE on one site of a model (streams activations, runs the model only up to the layer)."""
    from steerlab.models.loading import load
    from steerlab.sae.train import TrainConfig, train_sae

    cfg = TrainConfig(
        layer=layer,
        site=site,
        arch=arch,
        d_sae=d_sae,
        k=k,
        n_tokens=tokens,
        batch_size=batch_size,
        lr=lr,
        reuse=reuse,
        buffer_tokens=buffer_tokens,
        context_len=context_len,
        l1_coeff=l1_coeff,
        l0_coeff=l0_coeff,
        seed=seed,
    )
    m = load(model)
    m.arch.check_layer(layer)
    m.arch.site_width(site)
    text = _corpus(corpus)
    result = train_sae(m, text, cfg, out, resume=resume)
    rows = {
        "train seconds": result.metrics["train_seconds"],
        **{f"train {k}": v for k, v in result.metrics["final"].items() if k in ("fvu", "l0", "dead_frac")},
    }
    if evaluate:
        from steerlab.sae.evaluate import evaluate_sae

        _, held_out = text.split(cfg.held_out)
        ev = evaluate_sae(m, result.sae, held_out.documents)
        write_json(out / "eval.json", ev.to_dict())
        rows.update({k: v for k, v in ev.to_dict().items() if v is not None})
    _table(f"SAE {result.metrics['hook_name']} ({arch}, {result.metrics['d_sae']} latents)", rows)
    console.print(f"saved {result.folder}  (plot: {out / 'training_curve.png'}, metrics: {out / 'metrics.json'})")


def _load(sae: str, layer: Optional[int], site: Optional[str], fmt: Optional[str]):
    from steerlab.sae import load_sae

    return load_sae(sae, format=fmt, layer=layer, site=site)


@sae_app.command("eval")
def eval_cmd(
    sae: str = typer.Argument(..., help="SAE folder/file, hf://ORG/REPO/PATH or RELEASE:SAE_ID."),
    model: str = typer.Option(..., "--model", "-m"),
    corpus: Optional[List[str]] = typer.Option(
        None, "--corpus", "-c", help="Held-out text (default: the built-in corpus's held-out split)."
    ),
    tokens: int = typer.Option(16_384, "--tokens", help="Tokens for FVU / L0 / dead / dense."),
    ce_tokens: int = typer.Option(4_096, "--ce-tokens", help="Tokens for the CE-loss comparison (0 skips it)."),
    layer: Optional[int] = typer.Option(None, "--layer"),
    site: Optional[str] = typer.Option(None, "--site"),
    fmt: Optional[str] = typer.Option(None, "--format"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """FVU, L0, dead/dense fractions and CE loss recovered on held-out text."""
    from steerlab.models.loading import load
    from steerlab.sae.evaluate import evaluate_sae

    s = _load(sae, layer, site, fmt)
    m = load(model)
    s.check_fits(m)
    text = _corpus(corpus)
    docs = text.split()[1].documents if not corpus else text.documents
    ev = evaluate_sae(m, s, docs, n_tokens=tokens, ce_tokens=ce_tokens)
    if as_json:
        print(json.dumps(ev.to_dict(), indent=2))
    else:
        _table(f"{s.source}", {k: v for k, v in ev.to_dict().items() if v is not None})


@sae_app.command("info")
def info_cmd(
    sae: str = typer.Argument(...),
    layer: Optional[int] = typer.Option(None, "--layer"),
    site: Optional[str] = typer.Option(None, "--site"),
    fmt: Optional[str] = typer.Option(None, "--format"),
) -> None:
    """Show an SAE's conventions (activation, k, normalisation, b_dec on input, hook point)."""
    s = _load(sae, layer, site, fmt)
    print(json.dumps(s.describe(), indent=2, default=str))


@sae_app.command("convert")
def convert_cmd(
    sae: str = typer.Argument(...),
    out: Path = typer.Argument(..., help="Output folder (SAELens layout)."),
    layer: Optional[int] = typer.Option(None, "--layer"),
    site: Optional[str] = typer.Option(None, "--site"),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="saelens | gemmascope | goodfire | dictionary_learning | sparsify (default: detect)."
    ),
    model: Optional[str] = typer.Option(None, "--model", help="Check the SAE fits this model before converting."),
) -> None:
    """Convert any supported SAE into a SAELens-compatible folder."""
    from steerlab.sae import save_sae

    s = _load(sae, layer, site, fmt)
    if model:
        from steerlab.models.loading import load

        s.check_fits(load(model))
    console.print(f"saved {save_sae(s, out)}")


def _inspect(
    sae: str,
    model: str,
    out: Path,
    latents: Optional[str],
    tokens: int,
    corpus: Optional[List[str]],
    labels_from: Optional[Path],
    judge_url: Optional[str],
    judge_model: Optional[str],
    top: int,
) -> None:
    from steerlab.models.loading import load
    from steerlab.sae.inspect import http_labeler, import_labels, inspect_sae

    s = _load(sae, None, None, None)
    m = load(model)
    s.check_fits(m)
    chosen = None
    if latents:
        try:
            chosen = [int(v) for v in latents.split(",") if v.strip()]
        except ValueError:
            raise SteerlabError(f"--latents takes comma-separated integers, got '{latents}'.") from None
    imported = import_labels(labels_from) if labels_from else None
    labeler = http_labeler(judge_url, judge_model) if judge_url else None
    text = _corpus(corpus)
    docs = text.split()[1].documents if not corpus else text.documents
    reports = inspect_sae(m, s, docs, out, latents=chosen, n_tokens=tokens, labeler=labeler, imported=imported)
    alive = [r for r in reports if r.frequency > 0]
    for r in sorted(alive, key=lambda r: -r.max_act)[:top]:
        console.print(f"latent {r.index:5d}  freq {r.frequency:.4f}  {r.label}")
    console.print(f"{len(alive)}/{len(reports)} latents fired; wrote {out / 'dashboard.html'} and {out / 'labels.csv'}")


@sae_app.command("inspect")
def inspect_cmd(
    sae: str = typer.Argument(...),
    model: str = typer.Option(..., "--model", "-m"),
    out: Path = typer.Option(Path("sae-inspect"), "--out", "-o"),
    latents: Optional[str] = typer.Option(None, "--latents", help="Comma-separated latent ids (default: all)."),
    tokens: int = typer.Option(20_000, "--tokens"),
    corpus: Optional[List[str]] = typer.Option(None, "--corpus", "-c"),
    labels_from: Optional[Path] = typer.Option(
        None, "--labels-from", help="Neuronpedia export (JSON) or labels CSV to import."
    ),
    judge_url: Optional[str] = typer.Option(
        None, "--judge-url", help="OpenAI-compatible base URL for LLM-written labels."
    ),
    judge_model: Optional[str] = typer.Option(None, "--judge-model"),
    top: int = typer.Option(10, "--top", help="Latents to print."),
) -> None:
    """Top-activating contexts, frequency and a label per latent: dashboard.html + labels.csv."""
    _inspect(sae, model, out, latents, tokens, corpus, labels_from, judge_url, judge_model, top)


sae_app.command("latents", help="Alias of `inspect`.")(inspect_cmd)


@sae_app.command("default")
def default_cmd(
    model: str = typer.Argument("smollm2-135m-instruct"),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild it from its recorded recipe into the user cache."),
    seed: int = typer.Option(0, "--seed", help="With --rebuild: the training seed (0 = the shipped SAE's)."),
    force: bool = typer.Option(False, "--force", hidden=True, help="Old name of --rebuild."),
) -> None:
    """Show the default SAE of a packaged model (it ships with steerlab), or rebuild it from its recipe."""
    from steerlab.engine.generate import generate
    from steerlab.sae.default import build_default, default_dir, default_sae, rebuilt_dir

    if rebuild or force:
        sae = build_default(model, generate_fn=generate, seed=seed)
        folder = rebuilt_dir(model, seed)
    else:
        sae = default_sae(model, train=False)
        folder = default_dir(model)
    rows: dict = {"latents": sae.d_sae, "hook": sae.cfg.hook_name or f"{sae.layer}:{sae.site}"}
    if (folder / "eval.json").is_file():
        ev = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
        for text, data in ev.items():
            for key in ("fvu", "l0", "dead_frac", "ce_recovered"):
                if data.get(key) is not None:
                    rows[f"{text}: {key}"] = data[key]
    _table(f"default SAE for {model}", rows)
    console.print(f"SAE: {folder / 'sae'}  recipe: {folder / 'recipe.json'}")
    if rebuild or force:
        console.print(f"Use it with: --sae {folder / 'sae'}")


def register(app: typer.Typer) -> None:
    """Attach `steerlab sae ...` to the root app."""
    app.add_typer(sae_app, name="sae")
