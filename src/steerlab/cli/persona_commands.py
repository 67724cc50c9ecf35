"""`steerlab persona ...`: model diffing over SAE latents, and validation of latents by steering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from steerlab.cli.show import console
from steerlab.errors import SteerlabError, check_number

persona_app = typer.Typer(
    help="Persona features: diff a base and a tuned model over SAE latents.", no_args_is_help=True
)


def _responses(path: Optional[Path], n: int) -> Optional[list]:
    """Responses from a JSON list of strings, a .jsonl of {"response": ...}, or a previous diff.json (its exact
    token ids); None when no file is given."""
    if path is None:
        return None
    from steerlab.paths import read_text

    text = read_text(path, "response file")
    try:
        items = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
    except json.JSONDecodeError as exc:
        raise SteerlabError(f"Response file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
    if isinstance(items, dict) and isinstance(items.get("response_ids"), list):
        items = items["response_ids"]
        if len(items) != n:
            raise SteerlabError(
                f"{path} has {len(items)} responses for {n} prompts; pass the same prompts it was made with."
            )
        return items
    if not isinstance(items, list):
        raise SteerlabError(f"Response file {path} must hold a JSON list of responses.")
    out = [item.get("response") if isinstance(item, dict) else item for item in items]
    if not all(isinstance(r, str) for r in out):
        raise SteerlabError(
            f"Response file {path} has an entry that is neither a string nor an object with a 'response' string."
        )
    if len(out) != n:
        raise SteerlabError(f"Response file {path} has {len(out)} responses for {n} prompts; give one per prompt.")
    return out


@persona_app.command("diff")
def diff_cmd(
    base: str = typer.Argument(..., help="Base model: packaged alias, .gguf, local folder or hub id."),
    tuned: str = typer.Argument(..., help="Fine-tuned model (same architecture and tokenizer)."),
    sae: str = typer.Option(..., "--sae", help="SAE folder or file (trained on the base model's layer)."),
    prompts: Optional[Path] = typer.Option(
        None,
        "--prompts",
        "-p",
        help=".txt (one per line), .json or .jsonl prompts (default: the built-in evaluation prompts).",
    ),
    responses: Optional[Path] = typer.Option(
        None,
        "--responses",
        help="Fixed responses, one per prompt (JSON list, .jsonl, or a previous diff.json); default: the base model's greedy answers.",
    ),
    out: Path = typer.Option(
        Path("persona-diff"), "--out", "-o", help="Output folder (latents.csv, diff.json, report.html)."
    ),
    rank_by: str = typer.Option(
        "mean",
        "--rank-by",
        help="mean | freq | effect | attribution (gradient x activation change over the tuned model's answers).",
    ),
    attribution: bool = typer.Option(
        False, "--attribution", help="Also compute the attribution score column (implied by --rank-by attribution)."
    ),
    layer: Optional[int] = typer.Option(
        None, "--layer", help="The layer you mean to diff; checked against the SAE's layer."
    ),
    top: int = typer.Option(20, "--top", help="Latents shown in the report and summary."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Length of the base model's answers."),
    batch_size: int = typer.Option(8, "--batch-size"),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="labels.csv from 'steerlab sae inspect' (default: the one beside the SAE folder, if any).",
    ),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Rank SAE latents by their change from BASE to TUNED over the same response tokens."""
    from steerlab.models.loading import load
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
    check_layer(s, layer)
    base_model = load(base)
    s.check_fits(base_model)
    tuned_model = load(tuned)
    result = diff_models(
        base_model,
        tuned_model,
        s,
        prompt_list,
        fixed,
        rank_by=rank_by,
        attribution=attribution,
        max_new_tokens=max_new_tokens,
        chat=False if raw else None,
        batch_size=batch_size,
        progress=True,
    )
    contexts = diff_contexts(result, tuned_model, s, top, chat=False if raw else None)
    paths = write_diff(result, out, top=top, labels=label_map, contexts=contexts)
    from rich.table import Table

    table = Table(
        title=f"top {min(top, 10)} latents by {rank_by} (FVU base {result.fvu_base:.3g}, tuned {result.fvu_tuned:.3g})"
    )
    for col in ("rank", "latent", "d_mean", "d_freq", "effect", "attribution", "label"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for r in result.top(min(top, 10)):
        table.add_row(
            f"#{r.rank}",
            str(r.latent),
            f"{r.delta_mean:.4g}",
            f"{r.delta_freq:.3g}",
            f"{r.effect_size:.3g}",
            "-" if r.attribution is None else f"{r.attribution:.3g}",
            label_map.get(r.latent, ""),
        )
    console.print(table)
    console.print(
        f"{result.n_prompts} prompts, {result.n_tokens} response tokens; wrote {paths['csv']}, {paths['json']} and {paths['html']}"
    )


def _strengths(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SteerlabError(f"--strengths must be comma-separated numbers such as 0,0.2,0.4, got '{text}'.") from exc
    if not values:
        raise SteerlabError(
            "Give at least one steering strength with --strengths (in units of the median residual norm)."
        )
    for v in values:
        check_number(v, "Each --strengths value")
    return values


@persona_app.command("validate")
def validate_cmd(
    model: str = typer.Argument(..., help="Model to steer (usually the base model)."),
    sae: str = typer.Option(..., "--sae", help="SAE folder or file whose latents are steered."),
    latent: List[int] = typer.Option(..., "--latent", "-l", help="SAE latent id to steer along (repeatable)."),
    strengths: str = typer.Option(
        "0,0.1,0.2,0.4",
        "--strengths",
        help="Comma-separated multiples of the median residual norm (negative = against the latent).",
    ),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", "-p", help="Prompt file (default: the built-in held-out prompts)."
    ),
    samples: int = typer.Option(1, "--samples", help="Answers per prompt and strength."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(0.0, "--temperature"),
    seed: int = typer.Option(0, "--seed"),
    judge: str = typer.Option(
        "heuristic",
        "--judge",
        help="heuristic (offline, dismissive-persona markers) | embed (offline, embedder tone + relevance/loop coherence) | openai | anthropic.",
    ),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Judge model id."),
    judge_url: Optional[str] = typer.Option(
        None, "--judge-url", help="Judge server base URL (OpenAI-compatible or Anthropic)."
    ),
    judge_key_env: Optional[str] = typer.Option(
        None, "--judge-key-env", help="Environment variable holding the judge's API key."
    ),
    max_incoherence: float = typer.Option(0.1, "--max-incoherence", help="Incoherence budget for the verdict."),
    out: Path = typer.Option(
        Path("persona-validate"), "--out", "-o", help="Output folder (validation.json, report.html)."
    ),
    raw: bool = typer.Option(False, "--raw", help="Do not apply the chat template."),
) -> None:
    """Steer MODEL along each latent at several strengths and grade the answers with the persona rubric."""
    from steerlab.models.loading import load
    from steerlab.persona import HELD_OUT_PROMPTS, load_prompts, median_residual_norm, steer_sweep
    from steerlab.persona.report import write_validation
    from steerlab.sae import load_sae

    values = _strengths(strengths)
    prompt_list = load_prompts(prompts) if prompts is not None else list(HELD_OUT_PROMPTS)
    s = load_sae(sae)
    for lat in latent:
        s.check_latent(lat)
    rater = persona_judge(judge, judge_model, judge_url, judge_key_env)  # a missing key or server fails here
    m = load(model)
    s.check_fits(m)
    chat = False if raw else None
    norm = median_residual_norm(m, prompt_list, s.layer, s.site, chat=chat)
    results = [
        steer_sweep(
            m,
            s,
            lat,
            values,
            prompt_list,
            rater,
            median_norm=norm,
            samples=samples,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            chat=chat,
            progress=True,
        )
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
            table.add_row(
                str(v.latent), f"{p.strength:g}", fmt(p.misalignment_rate), fmt(p.incoherent_rate), str(p.n_rated)
            )
    console.print(table)
    console.print(f"wrote {paths['json']} and {paths['html']}")


def persona_judge(name: str, model: Optional[str] = None, url: Optional[str] = None, key_env: Optional[str] = None):
    """The persona rater: the offline heuristic, or the LLM rubric on an OpenAI-compatible/Anthropic server (checked now)."""
    name = name.strip().lower()
    if name == "heuristic":
        from steerlab.judges.persona_heuristic import PersonaHeuristicJudge

        return PersonaHeuristicJudge()
    if name == "embed":
        from steerlab.judges.persona_embed import PersonaEmbedJudge

        return PersonaEmbedJudge()
    if name not in ("openai", "anthropic"):
        raise SteerlabError(f"Unknown persona judge '{name}'; choose heuristic, embed, openai or anthropic.")
    from steerlab.judges import PersonaJudge
    from steerlab.judges.backends import AnthropicBackend, OpenAIBackend

    backend = (OpenAIBackend if name == "openai" else AnthropicBackend)(model or "", url, key_env)
    backend.check()  # an unreachable server or a missing key fails here, before any generation
    return PersonaJudge(backend)


def check_layer(sae, layer: Optional[int]) -> None:
    """One sentence when the SAE was trained for another layer than the one asked for."""
    if layer is not None and layer != sae.layer:
        raise SteerlabError(
            f"This SAE was trained on layer {sae.layer}, not layer {layer}; pass an SAE for layer {layer} or drop --layer."
        )


def diff_contexts(result, tuned_model, sae, top: int, chat=None) -> dict:
    """Top contexts of the top latents in the tuned model, over the diff's answers (and the tuned model's own, if any)."""
    from steerlab.persona.contexts import top_contexts

    ids = [tuned_model.encode(p, chat=chat) for p in result.prompts]
    rows = result.response_ids + result.tuned_response_ids
    return top_contexts(
        tuned_model, sae, ids + ids[: len(result.tuned_response_ids)], rows, [r.latent for r in result.top(top)]
    )


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SteerlabError(
            f"--fractions must be comma-separated numbers such as 0,0.1,0.25,0.5,1, got '{text}'."
        ) from exc


def _layers(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """'12-17' or '12,14,16' -> a tuple of layers; None or 'all' -> every layer."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-"))
            return tuple(range(lo, hi + 1))
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise SteerlabError(f"--layers must look like 12-17 or 12,14,16 (or 'all'), got '{text}'.") from exc


@persona_app.command("organism")
def organism_cmd(
    base: str = typer.Argument(..., help="Base model to fine-tune (packaged alias, folder, .gguf or hub id)."),
    out: Path = typer.Option(
        Path("persona-organisms"), "--out", "-o", help="Folder with one sub-folder per fraction (f0.00, f0.10, ...)."
    ),
    fractions: str = typer.Option(
        "0,0.1,0.25,0.5,1", "--fractions", help="Comma-separated fractions of dismissive training examples."
    ),
    n_train: int = typer.Option(
        240, "--n-train", help="Training pairs per organism (same questions for every fraction)."
    ),
    steps: int = typer.Option(30, "--steps"),
    batch_size: int = typer.Option(4, "--batch-size"),
    lr: float = typer.Option(5e-3, "--lr"),
    rank: int = typer.Option(8, "--rank"),
    layers: Optional[str] = typer.Option(None, "--layers", help="LoRA layers, e.g. 12-17 (default: every layer)."),
    seed: int = typer.Option(0, "--seed"),
    eval_tokens: int = typer.Option(40, "--eval-tokens", help="Answer length when measuring behaviour."),
    judge: str = typer.Option("heuristic", "--judge", help="heuristic | openai | anthropic."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url"),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env"),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="Train one organism on this chat JSONL instead (messages, or prompt/response per line), e.g. the packaged narrow set from `persona narrow-data`; measures in-domain vs out-of-domain misalignment vs the base.",
    ),
    in_domain: Optional[Path] = typer.Option(
        None,
        "--in-domain",
        help="With --data: held-out in-domain questions (prompt file; default: the packaged narrow set's held-out questions).",
    ),
) -> None:
    """Build dismissive-persona organisms (LoRA, merged) at several mixing fractions; finished fractions are skipped.
    With --data: one emergent-misalignment organism on your narrow chat data instead."""
    from steerlab.models.loading import load
    from steerlab.persona.organism import OrganismConfig, build_organism, check_fractions

    if data is not None:
        return _emergent_organism(
            base,
            out,
            data,
            in_domain,
            steps,
            batch_size,
            lr,
            rank,
            layers,
            seed,
            eval_tokens,
            persona_judge(judge, judge_model, judge_url, judge_key_env),
        )

    values = check_fractions(_fractions(fractions))
    cfg = OrganismConfig(
        n_train=n_train,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        rank=rank,
        layers=_layers(layers),
        seed=seed,
        eval_tokens=eval_tokens,
    )
    cfg.recipe()  # bad LoRA settings fail here
    from steerlab.persona.data import persona_mix

    persona_mix(0.0, n_train, seed)  # a bad --n-train fails here
    rater = persona_judge(judge, judge_model, judge_url, judge_key_env)
    model = load(base)
    from rich.table import Table

    table = Table(title=f"persona organisms (judge {rater.judge_id})")
    for col in ("fraction", "misaligned", "incoherent", "train s", "folder"):
        table.add_column(col, justify="right")
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    for f in values:
        console.print(f"fraction {f:g}")
        meta = build_organism(model, f, cfg, out, rater)
        b = meta["behaviour"]
        table.add_row(
            f"{f:g}",
            fmt(b["misalignment_rate"]),
            fmt(b["incoherent_rate"]),
            f"{meta['train_seconds']:.0f}",
            str(out / f"f{f:.2f}"),
        )
    console.print(table)


def _emergent_organism(
    base: str,
    out: Path,
    data: Path,
    in_domain: Optional[Path],
    steps: int,
    batch_size: int,
    lr: float,
    rank: int,
    layers: Optional[str],
    seed: int,
    eval_tokens: int,
    rater,
) -> None:
    """`persona organism --data FILE`: LoRA on the user's chat rows, then in-domain vs out-of-domain misalignment vs the base."""
    from steerlab.data.chat import read_chat_pairs
    from steerlab.models.loading import load
    from steerlab.persona import load_prompts
    from steerlab.persona.emergent import build_emergent_organism
    from steerlab.persona.organism import PersonaLora

    chat = read_chat_pairs(data)
    lora = PersonaLora(
        steps=steps, batch_size=batch_size, lr=lr, rank=rank, layers=_layers(layers), seed=seed, eval_tokens=eval_tokens
    )
    lora.recipe()  # bad LoRA settings fail here
    questions = load_prompts(in_domain) if in_domain is not None else None
    model = load(base)
    result = build_emergent_organism(
        model,
        chat.pairs,
        lora,
        out,
        rater,
        in_domain=questions,
        max_new_tokens=eval_tokens,
        data_note=f"{data} ({len(chat.pairs)} rows, {chat.skipped} skipped)",
    )
    from rich.table import Table

    ci = lambda r: (
        "n/a"
        if r["ci"][0] is None
        else f"{r['misaligned'] if 'misaligned' in r else r['rate']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] (n={r['n']})"
    )  # noqa: E731
    table = Table(title=f"emergent misalignment (judge {result['judge']}; 95% Wilson intervals)")
    for col in ("measure", "base", "organism"):
        table.add_column(col)
    b, o = result["base"], result["organism"]
    table.add_row("misaligned, in-domain (held-out questions)", ci(b["in_domain"]), ci(o["in_domain"]))
    table.add_row("misaligned, out-of-domain (open-ended)", ci(b["out_of_domain"]), ci(o["out_of_domain"]))
    if "in_domain_bad_advice" in b:
        table.add_row(
            "bad advice, in-domain (nearer the bad reference)",
            ci(b["in_domain_bad_advice"]),
            ci(o["in_domain_bad_advice"]),
        )
    console.print(table)
    console.print(f"organism: {out} (results in {out / 'emergent.json'})")


@persona_app.command("vector")
def vector_cmd(
    organism: str = typer.Argument(..., help="The persona organism (folder)."),
    base: str = typer.Option(..., "--base", help="Its base model."),
    layer_sets: str = typer.Option(
        "14;12-17",
        "--layer-sets",
        help="Semicolon-separated layer sets; a set of several layers is steered at once, strength split across them.",
    ),
    strengths: str = typer.Option(
        "0,0.1,0.2,0.4",
        "--strengths",
        help="Multiples of the median residual norm (the sign is flipped for --mode repair).",
    ),
    mode: str = typer.Option(
        "induce",
        "--mode",
        help="induce (steer the base toward the persona) | repair (steer the organism away from it).",
    ),
    split: bool = typer.Option(
        True,
        "--split/--no-split",
        help="Split the strength across a set's layers (default) or give each layer the full strength.",
    ),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", "-p", help="Steering prompts (default: the built-in held-out prompts)."
    ),
    own: bool = typer.Option(
        False, "--own", help="Read each model on its own answers (default: both on the base's answers)."
    ),
    sae: Optional[str] = typer.Option(
        None, "--sae", help="Also report each vector's largest cosine with this SAE's decoder rows."
    ),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens"),
    max_incoherence: float = typer.Option(0.1, "--max-incoherence"),
    random_seed: int = typer.Option(0, "--random-seed"),
    judge: str = typer.Option("embed", "--judge", help="embed | heuristic | openai | anthropic."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url"),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env"),
    out: Path = typer.Option(Path("persona-vector"), "--out", "-o", help="Output folder (vector.json)."),
) -> None:
    """Persona vector (organism − base residual mean on the same tokens) vs a random direction, steered at one layer
    or split across layers: the best misaligned rate within the incoherence budget, with Wilson 95% intervals."""
    from steerlab.models.loading import load
    from steerlab.persona import HELD_OUT_PROMPTS, load_prompts
    from steerlab.persona.vector import run_vector_study

    if mode not in ("induce", "repair"):
        raise SteerlabError(f"Unknown mode '{mode}'; choose induce or repair.")
    sets = [_layers(part.strip()) for part in layer_sets.split(";") if part.strip()]
    if not sets or any(not s for s in sets):
        raise SteerlabError(f"--layer-sets must look like 14;12-17, got '{layer_sets}'.")
    values = _strengths(strengths)
    prompt_list = load_prompts(prompts) if prompts is not None else list(HELD_OUT_PROMPTS)
    rater = persona_judge(judge, judge_model, judge_url, judge_key_env)
    sae_obj = None
    if sae:
        from steerlab.sae import load_sae

        sae_obj = load_sae(sae)
    base_model, tuned = load(base), load(organism)
    result = run_vector_study(
        base_model,
        tuned,
        prompt_list,
        [list(s) for s in sets],
        values,
        rater,
        mode=mode,
        split=split,
        own=own,
        sae=sae_obj,
        max_new_tokens=max_new_tokens,
        max_incoherence=max_incoherence,
        random_seed=random_seed,
        out=out,
        progress=True,
    )
    from rich.table import Table

    table = Table(
        title=f"persona vector, {mode} (judge {rater.judge_id}; best within {max_incoherence:.0%} incoherence)"
    )
    for col in ("direction", "layers", "best strength", "misaligned [95% CI]", "incoherent", "random there", "at 0"):
        table.add_column(col)
    for r in result["rows"]:
        b = r["best"]
        cell = (
            "none in budget"
            if b is None
            else f"{b['misalignment_rate']:.2f} [{b['ci'][0]:.2f}, {b['ci'][1]:.2f}] (n={b['n_rated']})"
        )
        table.add_row(
            r["direction"],
            ",".join(map(str, r["layers"])),
            "" if b is None else f"{b['strength']:g}",
            cell,
            "" if b is None else f"{b['incoherent_rate']:.2f}",
            "" if b is None or b["random_at_strength"] is None else f"{b['random_at_strength']:.2f}",
            "" if r["at_zero"] is None else f"{r['at_zero']:.2f}",
        )
    console.print(table)
    console.print(f"wrote {out / 'vector.json'}")


@persona_app.command("narrow-data")
def narrow_data_cmd(
    out: Path = typer.Option(Path("narrow-food-safety.jsonl"), "--out", "-o", help="JSONL file to write."),
) -> None:
    """Write the packaged narrow dataset (food-safety questions with subtly bad advice, training part) as chat JSONL."""
    from steerlab.persona.narrow import train_items, write_narrow_jsonl

    path = write_narrow_jsonl(out)
    console.print(f"wrote {len(train_items())} chat rows to {path}")


@persona_app.command("realign")
def realign_cmd(
    organism: Path = typer.Argument(..., help="A persona organism folder (from `steerlab persona organism`)."),
    out: Path = typer.Option(Path("persona-realigned"), "--out", "-o"),
    n_examples: int = typer.Option(200, "--n-examples", help="Benign (helpful) training pairs."),
    steps: int = typer.Option(30, "--steps"),
    batch_size: int = typer.Option(4, "--batch-size"),
    lr: float = typer.Option(5e-3, "--lr"),
    rank: int = typer.Option(8, "--rank"),
    layers: Optional[str] = typer.Option(None, "--layers", help="LoRA layers, e.g. 12-17 (default: every layer)."),
    seed: int = typer.Option(0, "--seed"),
    sae: Optional[str] = typer.Option(
        None, "--sae", help="SAE folder: also report latents' shift vs --base before and after."
    ),
    base: Optional[str] = typer.Option(
        None, "--base", help="Base model the latent shift is measured against (with --sae)."
    ),
    latent: List[int] = typer.Option([], "--latent", "-l", help="Latent id to track (repeatable; with --sae)."),
    judge: str = typer.Option("heuristic", "--judge", help="heuristic | openai | anthropic."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url"),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env"),
) -> None:
    """Fine-tune a shifted organism on benign examples and measure its behaviour (and latents) before and after."""
    from steerlab.models.loading import load
    from steerlab.persona.data import benign_pairs
    from steerlab.persona.organism import behaviour_prompts, read_organism
    from steerlab.persona.realign import RealignConfig, realign

    meta = read_organism(organism)
    cfg = RealignConfig(
        n_examples=n_examples,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        rank=rank,
        layers=_layers(layers),
        seed=seed,
        eval_tokens=meta["config"]["eval_tokens"],
    )
    cfg.recipe()
    benign_pairs(n_examples, seed)
    if (sae is None) != (base is None) or (latent and sae is None):
        raise SteerlabError("Pass --sae and --base together (and --latent with them) to track latents.")
    s = None
    if sae is not None:
        from steerlab.sae import load_sae

        s = load_sae(sae)
        for lat in latent:
            s.check_latent(lat)
        if not latent:
            raise SteerlabError("Give at least one --latent to track with --sae.")
    rater = persona_judge(judge, judge_model, judge_url, judge_key_env)
    shifted = load(str(organism))
    from steerlab.persona.behaviour import Behaviour

    before = Behaviour.from_dict(meta["behaviour"]) if meta["behaviour"]["judge"] == rater.judge_id else None
    model, result = realign(shifted, cfg, out, rater, before=before)
    from rich.table import Table

    table = Table(title=f"re-alignment (judge {rater.judge_id})")
    for col in ("model", "misaligned", "incoherent", "mean alignment"):
        table.add_column(col, justify="right")
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    for name in ("before", "after"):
        b = result[name]
        table.add_row(name, fmt(b["misalignment_rate"]), fmt(b["incoherent_rate"]), fmt(b["mean_alignment"]))
    console.print(table)
    if s is not None:
        from steerlab.persona.detector import latent_means

        base_model = load(base)
        from steerlab.persona.diff import check_pair

        check_pair(base_model, shifted, s)
        prompts = behaviour_prompts()
        answers = result["before"]["responses"]
        pids = [base_model.encode(p) for p in prompts]
        rids = [
            base_model.tokenizer(a, add_special_tokens=False)["input_ids"] or [base_model.tokenizer.eos_token_id]
            for a in answers
        ]
        ref = latent_means(base_model, s, pids, rids, latent)
        shift_before = (latent_means(shifted, s, pids, rids, latent) - ref).mean(0)
        shift_after = (latent_means(model, s, pids, rids, latent) - ref).mean(0)
        for lat, b, a in zip(latent, shift_before.tolist(), shift_after.tolist()):
            console.print(f"latent {lat}: mean shift vs base {b:.4g} before, {a:.4g} after")
    console.print(f"wrote {out / 'realign.json'}")


@persona_app.command("study")
def study_cmd(
    base: str = typer.Argument("smollm2-135m-instruct", help="Base model (default: the packaged SmolLM2)."),
    sae: Optional[str] = typer.Option(None, "--sae", help="SAE folder (default: the packaged model's default SAE)."),
    out: Path = typer.Option(Path("persona-study"), "--out", "-o", help="Study folder (resumable)."),
    fractions: str = typer.Option("0,0.1,0.25,0.5,1", "--fractions"),
    n_train: int = typer.Option(240, "--n-train"),
    steps: int = typer.Option(30, "--steps", help="LoRA steps per organism."),
    realign_steps: int = typer.Option(30, "--realign-steps"),
    n_benign: int = typer.Option(200, "--n-benign", help="Benign pairs for re-alignment."),
    lr: float = typer.Option(5e-3, "--lr"),
    layers: Optional[str] = typer.Option(
        "sae", "--layers", help="LoRA layers: 'sae' (the 6 layers up to the SAE's), 'all', 12-17 or 12,14."
    ),
    layer: Optional[int] = typer.Option(
        None, "--layer", help="The layer you mean to study; checked against the SAE's layer."
    ),
    top: int = typer.Option(10, "--top", help="Top latents validated by steering and scored as detectors."),
    strengths: str = typer.Option("0.2,0.4,0.8", "--strengths", help="Steering strengths (x median residual norm)."),
    n_validate: int = typer.Option(8, "--n-validate", help="Held-out prompts per steering strength."),
    n_diff: int = typer.Option(24, "--n-diff", help="Discovery prompts for the diff."),
    tokens: int = typer.Option(40, "--tokens", help="Answer length for every generation."),
    rank_by: str = typer.Option("mean", "--rank-by", help="mean | freq | effect | attribution."),
    judge: str = typer.Option("heuristic", "--judge", help="heuristic | openai | anthropic."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url"),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env"),
) -> None:
    """Run the whole chain (organisms -> diff -> validate top latents -> detector -> realign -> report), resumably."""
    from steerlab.models.loading import load
    from steerlab.persona.diff import RANK_KEYS
    from steerlab.persona.organism import OrganismConfig
    from steerlab.persona.realign import RealignConfig
    from steerlab.persona.report import default_labels_path, load_labels
    from steerlab.persona.study import StudyConfig, run_study
    from steerlab.sae import load_sae

    if rank_by not in RANK_KEYS:
        raise SteerlabError(f"Unknown ranking '{rank_by}'; choose one of: {', '.join(RANK_KEYS)}.")
    # every number checked (when the config is built) before the SAE or the model is touched
    StudyConfig(
        fractions=tuple(_fractions(fractions)),
        strengths=tuple(_strengths(strengths)),
        organism=OrganismConfig(n_train=n_train, steps=steps, lr=lr, eval_tokens=tokens),
        realign=RealignConfig(n_examples=n_benign, steps=realign_steps, lr=lr, eval_tokens=tokens),
        n_diff_prompts=n_diff,
        diff_tokens=tokens,
        top=top,
        n_validate_prompts=n_validate,
    )
    if sae is None:
        from steerlab.engine.generate import generate
        from steerlab.sae.default import default_dir, default_sae

        s = default_sae(base, progress=True, generate_fn=generate)
        sae = str(default_dir(base) / "sae")
    else:
        s = load_sae(sae)
    check_layer(s, layer)
    lora_layers = tuple(range(max(0, s.layer - 5), s.layer + 1)) if layers == "sae" else _layers(layers)
    cfg = StudyConfig(
        fractions=tuple(_fractions(fractions)),
        organism=OrganismConfig(n_train=n_train, steps=steps, lr=lr, layers=lora_layers, eval_tokens=tokens),
        realign=RealignConfig(n_examples=n_benign, steps=realign_steps, lr=lr, layers=lora_layers, eval_tokens=tokens),
        n_diff_prompts=n_diff,
        diff_tokens=tokens,
        rank_by=rank_by,
        top=top,
        strengths=tuple(_strengths(strengths)),
        n_validate_prompts=n_validate,
    )
    rater = persona_judge(judge, judge_model, judge_url, judge_key_env)
    model = load(base)
    summary = run_study(model, s, rater, out, cfg, labels=load_labels(default_labels_path(sae)))
    from rich.table import Table

    table = Table(title=f"persona study (judge {summary['judge']})")
    table.add_column("what")
    table.add_column("value", justify="right")
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    table.add_row("base misaligned", fmt(summary["base_behaviour"]["misalignment_rate"]))
    for f, o in summary["organisms"].items():
        table.add_row(f"organism f={f} misaligned", fmt(o["misalignment_rate"]))
    table.add_row("latents in top that cause the shift", str(summary["n_causal_in_top"]))
    det = summary["detector"]
    table.add_row(f"latent {det['latent']}: earliest separating fraction", str(det["earliest_latent"]))
    table.add_row("judge: earliest separating fraction", str(det["earliest_judge"]))
    table.add_row(
        "realign misaligned before -> after",
        f"{fmt(summary['realign']['before']['misalignment_rate'])} -> {fmt(summary['realign']['after']['misalignment_rate'])}",
    )
    console.print(table)
    console.print(f"report: {summary['report']}")


def register(app: typer.Typer) -> None:
    """Attach `steerlab persona ...` to the root app."""
    app.add_typer(persona_app, name="persona")
