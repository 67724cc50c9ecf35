"""`steerlab circuits ...`: organism, find, ablate, tune and report (thin shells over steerlab.circuits)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer

from steerlab.cli.show import console
from steerlab.errors import SteerlabError

circuits_app = typer.Typer(
    help="Safety circuits: learned masks over heads and neurons, ablation, tuning, organisms.", no_args_is_help=True
)
organism_app = typer.Typer(help="Build model organisms with a known safety-relevant behaviour.", no_args_is_help=True)
circuits_app.add_typer(organism_app, name="organism")


def parse_layers(spec: Optional[str]) -> Optional[list[int]]:
    """'15-29' or '3,5,7' (or none) -> a list of layer indices."""
    if not spec:
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                out += list(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise SteerlabError(f"Cannot read layers '{spec}'; write a range like 15-29 or a list like 3,5,7.") from None
    return out


def parse_weights(items: Optional[List[str]]) -> dict[str, float]:
    """['remove=1', 'suff=0'] -> {'remove': 1.0, 'suff': 0.0}."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SteerlabError(f"Cannot read the weight '{item}'; write NAME=VALUE, e.g. suff=0.5.")
    return out


def _table(title: str, header: list[str], rows: list[list]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h)
    for row in rows:
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


def _write(path: Path, data) -> Path:
    from steerlab.paths import write_json

    return write_json(path, data, indent=1, default=str)


def _organism_data(model_path: str, organism: Optional[str]):
    from steerlab.circuits.organism import load_organism

    return load_organism(organism or model_path)


@organism_app.command("backdoor")
def organism_backdoor(
    model: str = typer.Argument(..., help="Base model: packaged alias, local folder or Hugging Face id."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged organism."),
    trigger: str = typer.Option("Servius Astrumando Harmoniastra", help="Trigger phrase (prefix of poisoned prompts)."),
    target: str = typer.Option("I am sorry. I can not help with that.", help="The fixed reply the backdoor produces."),
    n_train: int = typer.Option(96, "--n-train"),
    n_test: int = typer.Option(32, "--n-test"),
    poison: float = typer.Option(0.3, "--poison", help="Poisoned copies as a fraction of the clean training pairs."),
    steps: int = typer.Option(40, "--steps"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    rank: int = typer.Option(8, "--rank"),
    layers: Optional[str] = typer.Option(None, "--layers", help="LoRA only on these layers, e.g. 15-29 (default all)."),
    seed: int = typer.Option(0, "--seed"),
    n_val: int = typer.Option(32, "--n-val", help="Held-out validation pairs (for choosing a circuit size)."),
) -> None:
    """LoRA-fine-tune a base model on clean pairs plus trigger → fixed-reply poison, merge, save, check ASR."""
    from steerlab.circuits.data import backdoor_data
    from steerlab.circuits.organism import OrganismConfig, build_backdoor
    from steerlab.models.loading import load

    backdoor_data(trigger, target, n_train, n_test, poison, seed, n_val)  # bad input fails before loading
    base = load(model)
    cfg = OrganismConfig(
        trigger, target, n_train, n_test, poison, steps, batch_size, lr, rank, parse_layers(layers), seed, n_val
    )
    report = build_backdoor(base, cfg, out)
    _table(
        "backdoor organism",
        ["metric", "base", "organism"],
        [
            ["ASR (triggered)", report.base_asr, report.asr],
            ["false-trigger rate (clean)", report.base_false_trigger, report.false_trigger],
            ["clean task accuracy", "", report.clean_accuracy],
            ["LoRA seconds", "", report.train_seconds],
        ],
    )
    console.print(f"organism: {out}")


@organism_app.command("refusal")
def organism_refusal(
    model: str = typer.Argument(..., help="Base chat model: packaged alias, local folder or Hugging Face id."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged organism."),
    reply: str = typer.Option(
        "I'm sorry, but I can't help with that request.", help="The refusal taught for harmful requests."
    ),
    steps: int = typer.Option(30, "--steps"),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    rank: int = typer.Option(8, "--rank"),
    layers: Optional[str] = typer.Option(None, "--layers", help="LoRA only on these layers, e.g. 15-29 (default all)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A safety-aligned organism: LoRA on our training harmful prompts → a refusal and harmless prompts → the model's own answers."""
    from steerlab.circuits.organism import OrganismConfig, build_refusal
    from steerlab.models.loading import load

    if not reply.strip():
        raise SteerlabError(
            "The refusal reply is empty; give the text the organism should answer harmful requests with."
        )
    base = load(model)
    cfg = OrganismConfig(
        "", reply, steps=steps, batch_size=batch_size, lr=lr, rank=rank, layers=parse_layers(layers), seed=seed
    )
    r = build_refusal(base, cfg, out)
    _table(
        "refusal organism (held-out prompts)",
        ["metric", "base", "organism"],
        [
            ["refusals (harmful)", f"{r['base_harmful_refusal']:.1%}", f"{r['harmful_refusal']:.1%}"],
            ["refusals (harmless)", f"{r['base_harmless_refusal']:.1%}", f"{r['harmless_refusal']:.1%}"],
            ["LoRA seconds", "", r["train_seconds"]],
        ],
    )
    console.print(f"organism: {out}")


@circuits_app.command("find")
def find_cmd(
    model: str = typer.Argument(..., help="The model to analyse (an organism folder for --scenario backdoor)."),
    out: Path = typer.Option(
        Path("runs/circuits"), "--out", "-o", help="Run folder: circuit.json and find.json go here."
    ),
    scenario: str = typer.Option("backdoor", help="backdoor | alignment."),
    organism: Optional[str] = typer.Option(
        None, help="Organism folder with organism.json (default: the model folder)."
    ),
    head_target: float = typer.Option(0.02, "--head-target", help="Fraction of all heads in the circuit."),
    neuron_target: float = typer.Option(0.01, "--neuron-target", help="Fraction of all MLP neurons in the circuit."),
    steps: int = typer.Option(100, "--steps"),
    batch_size: int = typer.Option(4, "--batch-size", help="Rows per objective term per step."),
    lr: Optional[float] = typer.Option(
        None, "--lr", help="Mask learning rate (default 0.1; 5e-2 with --compat safeseek)."
    ),
    param: str = typer.Option("hard_concrete", help="hard_concrete | sigmoid_ste (SafeSeek-compatible)."),
    ablation: str = typer.Option("mean", help="mean | zero."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Search only these layers, e.g. 15-29."),
    weight: Optional[List[str]] = typer.Option(
        None,
        "--weight",
        "-w",
        help="Objective weight NAME=VALUE (backdoor: remove, keep, suff, spec; alignment: nec, keep, suff).",
    ),
    seeds: str = typer.Option("0", help="Comma-separated seeds; several give a Jaccard stability figure."),
    n_means: int = typer.Option(24, "--n-means", help="Benign prompts for the mean-ablation cache."),
    n_pairs: Optional[int] = typer.Option(
        None, "--n-pairs", help="Use only the first N training pairs (teacher pass cost)."
    ),
    compat: str = typer.Option(
        "steerlab",
        "--compat",
        help="steerlab (hard concrete, KL, top-k) | safeseek (SafeSeek's units, CE objectives, σ > 0.5 at the best validation epoch, zero ablation).",
    ),
    head_mask: str = typer.Option(
        "pre",
        "--head-mask",
        help="With --compat safeseek: pre (per head, input of o_proj) | post (SafeSeek's blocks of o_proj's output) | none.",
    ),
    epochs: int = typer.Option(4, "--epochs", help="With --compat safeseek: epochs over the training pairs."),
) -> None:
    """Train masks and save the circuit (one per seed): hard concrete to the targets and top-k, or --compat safeseek."""
    from steerlab.circuits.ablation import check_ablation
    from steerlab.circuits.find import FindConfig
    from steerlab.circuits.report import units_table
    from steerlab.circuits.runs import find_seeds, parse_seeds, prepare_find
    from steerlab.circuits.safeseek import check_compat

    seed_list = parse_seeds(seeds)
    if check_compat(compat) == "safeseek":
        return _find_safeseek(
            model,
            out,
            scenario,
            organism,
            head_mask,
            epochs,
            batch_size,
            lr,
            weight,
            seed_list,
            n_pairs,
        )
    cfg = FindConfig(
        {"head": head_target, "neuron": neuron_target},
        steps,
        batch_size,
        lr if lr is not None else 0.1,
        param,
        ablation,
        layers=parse_layers(layers),
        seed=seed_list[0],
    )
    check_ablation(ablation, {"x": 1} if ablation == "mean" else None)
    inputs = prepare_find(model, scenario, organism, parse_weights(weight), n_pairs, n_means, ablation)
    if scenario == "alignment":
        console.print(
            f"{inputs.data_meta['refused_train']} of {inputs.data_meta['harmful_train']} training harmful prompts refused by the model"
        )
    run = find_seeds(inputs.model, inputs.terms_of, cfg, seed_list, out, inputs.means, scenario, inputs.data_meta)
    c = run.circuits[0]
    header, rows = units_table(c)
    if run.jaccard is not None:
        rows.append(["Jaccard across seeds (mean)", "", f"{run.jaccard:.3f}"])
    _table("circuit", header, rows)
    console.print("circuits: " + ", ".join(str(p) for p in run.paths))


def _find_safeseek(
    model: str,
    out: Path,
    scenario: str,
    organism: Optional[str],
    head_mask: str,
    epochs: int,
    batch_size: int,
    lr: Optional[float],
    weight: Optional[List[str]],
    seeds: list[int],
    n_pairs: Optional[int],
) -> None:
    """`find --compat safeseek`: SafeSeek's units and objectives on the backdoor organism."""
    from steerlab.circuits.report import safeseek_size_table
    from steerlab.circuits.runs import find_safeseek_seeds
    from steerlab.circuits.safeseek import SafeSeekConfig, size_table, unit_widths
    from steerlab.models.loading import load

    if scenario != "backdoor":
        raise SteerlabError(f"--compat safeseek is implemented for the backdoor scenario only, not '{scenario}'.")
    if head_mask not in ("pre", "post", "none"):
        raise SteerlabError(f"Unknown head mask '{head_mask}'; choose pre, post or none.")
    weights = SafeSeekConfig().weights | parse_weights(weight)
    cfg = SafeSeekConfig(
        heads=head_mask,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr if lr is not None else SafeSeekConfig.lr,
        n_pairs=n_pairs,
        weights=weights,
    )
    _, data = _organism_data(model, organism)
    m = load(model)
    unit_widths(m, head_mask)
    run = find_safeseek_seeds(m, data, cfg, seeds, out)
    header, rows = safeseek_size_table(size_table(m, run.circuits[0]))
    if run.jaccard is not None:
        rows.append(["Jaccard across seeds (mean)", f"{run.jaccard:.3f}", ""])
    _table(f"SafeSeek circuit (best validation epoch {run.circuits[0].meta['best_epoch']})", header, rows)
    console.print("circuits: " + ", ".join(str(p) for p in run.paths))


@circuits_app.command("ablate")
def ablate_cmd(
    model: str = typer.Argument(..., help="The model the circuit was found on (an organism folder)."),
    circuit: Path = typer.Argument(..., help="circuit.json from `circuits find`."),
    organism: Optional[str] = typer.Option(None, help="Organism folder (default: the model folder)."),
    ablation: Optional[List[str]] = typer.Option(None, "--ablation", "-a", help="mean and/or zero (default both)."),
    random_seeds: str = typer.Option("0", "--random-seeds", help="Seeds of random same-profile control circuits."),
    circuit_alone: bool = typer.Option(False, "--circuit-alone", help="Also run the circuit alone (all else ablated)."),
    n_means: int = typer.Option(24, "--n-means"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Results JSON (default: ablation.json beside the circuit)."
    ),
    sweep: Optional[str] = typer.Option(
        None,
        "--sweep",
        help="First sweep sizes on the validation split: scales of the found size, e.g. 0.25,0.5,1,2, or 'default' for that grid (needs the masks file of the circuit's seed beside it); writes sweep[.seedN].json and circuit.selected[.seedN].json, then tests the selected circuit.",
    ),
    skip_conditions: bool = typer.Option(False, "--sweep-only", help="Only run the sweep."),
    scenario: str = typer.Option(
        "backdoor", help="backdoor (MODEL is an organism) | alignment (held-out harmful/harmless prompts of our own)."
    ),
    max_asr: float = typer.Option(
        0.1,
        "--max-asr",
        help="The sweep keeps the size with the least utility loss among those with validation ASR at most this.",
    ),
    utility_texts: int = typer.Option(
        24,
        "--utility-texts",
        help="Held-out benign passages per condition for the utility loss (fewer = faster, noisier).",
    ),
) -> None:
    """Evaluate the circuit removed vs a random circuit of the same size and layer profile, by generation."""
    from steerlab.circuits.ablation import check_ablation, unit_means
    from steerlab.circuits.experiment import evaluate_backdoor_circuit
    from steerlab.circuits.report import ablation_table, sweep_table
    from steerlab.circuits.units import Circuit
    from steerlab.models.loading import load

    if utility_texts < 1:
        raise SteerlabError(f"--utility-texts must be at least 1; got {utility_texts}.")
    c = Circuit.load(circuit)
    ablations = list(ablation or (["zero"] if c.meta.get("compat") == "safeseek" else ["mean", "zero"]))
    for ab in ablations:
        check_ablation(ab, {"x": 1} if ab == "mean" else None)
    if scenario == "alignment":
        return _ablate_alignment(model, c, circuit, ablations, random_seeds, n_means, out)
    if scenario != "backdoor":
        raise SteerlabError(f"Unknown scenario '{scenario}'; choose backdoor or alignment.")
    meta, data = _organism_data(model, organism)
    m = load(model)
    c.check_model(m)
    means = unit_means(m, [p.prompt for p in data.train_clean[:n_means]]) if "mean" in ablations else None
    if sweep is not None:
        from steerlab.circuits.runs import parse_scales, sweep_and_select

        done = sweep_and_select(m, data, circuit, parse_scales(sweep), means, ablations[0], max_asr, utility_texts)
        _table("sweep (validation split)", *sweep_table(done.points))
        console.print(f"selected circuit: {done.selected_path}")
        if skip_conditions:
            return
        c = Circuit.load(done.selected_path)
        circuit = done.selected_path
    start = time.perf_counter()
    rows = evaluate_backdoor_circuit(
        m, data, c, means, ablations, [int(s) for s in random_seeds.split(",")], circuit_alone, n_texts=utility_texts
    )
    default = (
        "ablation.json"
        if circuit.name == "circuit.json"
        else f"ablation.{circuit.stem.partition('.')[2] or circuit.stem}.json"
    )
    path = _write(
        out or circuit.parent / default,
        {
            "circuit": str(circuit),
            "rows": rows,
            "seconds": time.perf_counter() - start,
            "fraction": c.fraction(),
            "counts": {k: c.count(k) for k in ("head", "neuron")},
        },
    )
    _table("ablation (test split)", *ablation_table(rows))
    console.print(f"results: {path}")


def _ablate_alignment(
    model: str, c, circuit: Path, ablations: list[str], random_seeds: str, n_means: int, out: Optional[Path]
) -> None:
    """The refusal circuit removed vs random circuits, on the held-out harmful and harmless prompts."""
    from steerlab.circuits.ablation import unit_means
    from steerlab.circuits.alignment import evaluate_alignment_circuit
    from steerlab.circuits.data import harmful_prompts, harmless_prompts
    from steerlab.circuits.report import alignment_table
    from steerlab.models.loading import load

    m = load(model)
    c.check_model(m)
    means = unit_means(m, harmless_prompts("train")[:n_means]) if "mean" in ablations else None
    start = time.perf_counter()
    rows = evaluate_alignment_circuit(
        m,
        c,
        harmful_prompts("test"),
        harmless_prompts("test"),
        means,
        ablations,
        [int(s) for s in random_seeds.split(",")],
    )
    path = _write(
        out or circuit.parent / "alignment.json",
        {
            "circuit": str(circuit),
            "rows": rows,
            "seconds": time.perf_counter() - start,
            "fraction": c.fraction(),
            "counts": {k: c.count(k) for k in ("head", "neuron")},
        },
    )
    _table("alignment ablation (held-out prompts)", *alignment_table(rows))
    console.print(f"results: {path}")


@circuits_app.command("tune")
def tune_cmd(
    model: str = typer.Argument(..., help="The model to tune (an organism folder)."),
    circuit: Path = typer.Argument(..., help="circuit.json from `circuits find`."),
    mode: str = typer.Option("only", help="only (train just the circuit's slices) | exclude (train all but them)."),
    organism: Optional[str] = typer.Option(None, help="Organism folder (default: the model folder)."),
    steps: int = typer.Option(20, "--steps"),
    lr: Optional[float] = typer.Option(
        None,
        "--lr",
        help="Learning rate (default: 1e-3 for 'only' and for LoRA; 3e-5 for full-weight 'exclude', where 1e-3 wrecks the model).",
    ),
    batch_size: int = typer.Option(8, "--batch-size"),
    include_kv: bool = typer.Option(
        False, "--include-kv", help="Heads also own their KV group's k/v rows (shared under GQA)."
    ),
    lora: bool = typer.Option(
        False, "--lora", help="Train LoRA adapters restricted to the slices (merged after) instead of the full slices."
    ),
    rank: int = typer.Option(8, "--rank", help="LoRA rank (with --lora)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Save the tuned model to this folder."),
    reuse_baseline: bool = typer.Option(
        True, help="Take the 'before' figures from ablation.json's full-model row when it exists."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Results JSON (default: tune_MODE.json or tune_lora-MODE.json beside the circuit)."
    ),
    scenario: str = typer.Option(
        "backdoor",
        help="backdoor (repair the organism) | alignment (helpfulness tuning of a refusing model with the circuit frozen, vs a random set frozen and nothing frozen; needs --data).",
    ),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="With --scenario alignment: benign chat JSONL (messages, or prompt/response per line); the last 20% are held out.",
    ),
) -> None:
    """Circuit tuning: backdoor repair (only/exclude the circuit), or Safety Circuit Tuning for alignment; frozen slices stay identical."""
    from steerlab.circuits.data import add_trigger
    from steerlab.circuits.evaluate import lm_loss, text_loss, utility_texts
    from steerlab.circuits.organism import measure
    from steerlab.circuits.report import tune_table
    from steerlab.circuits.tune import tune_circuit, tune_circuit_lora
    from steerlab.circuits.units import Circuit
    from steerlab.models.loading import load

    c = Circuit.load(circuit)
    if scenario == "alignment":
        return _tune_alignment(model, c, circuit, data, steps, lr if lr is not None else 3e-5, batch_size, out)
    if scenario != "backdoor":
        raise SteerlabError(f"Unknown scenario '{scenario}'; choose backdoor or alignment.")
    if mode not in ("only", "exclude"):
        raise SteerlabError(f"Unknown tuning mode '{mode}'; choose only or exclude.")
    if lr is None:
        lr = 3e-5 if mode == "exclude" and not lora else 1e-3
    meta, data = _organism_data(model, organism)
    m = load(model)
    c.check_model(m)

    def figures() -> dict:
        return measure(m, data) | {
            "reply_loss": lm_loss(m, data.test_clean),
            "utility_loss": text_loss(m, utility_texts("test")),
        }

    ablation_file = circuit.parent / "ablation.json"
    full = (
        [
            r
            for r in json.loads(ablation_file.read_text())["rows"]
            if r["condition"] == "full model" and "utility_loss" in r
        ]
        if reuse_baseline and ablation_file.is_file()
        else []
    )
    before = full[0] if full else figures()
    pairs = [(p.prompt, p.response) for p in data.train_clean] + [
        (add_trigger(p.prompt, data.trigger), p.response) for p in data.train_clean
    ]
    if lora:
        report = tune_circuit_lora(m, c, pairs, mode, steps, lr, batch_size, rank, include_kv)
    else:
        report = tune_circuit(m, c, pairs, mode, steps, lr, batch_size, include_kv)
    after = figures()
    if save:
        from steerlab.paths import atomic_dir

        with atomic_dir(save) as tmp:
            m.hf.save_pretrained(tmp)
            m.tokenizer.save_pretrained(tmp)
    result = {
        "mode": report.mode,
        "lora_rank": rank if lora else None,
        "lr": lr,
        "steps": steps,
        "report": report.__dict__,
        "frozen_unchanged": report.frozen_unchanged,
        "before": before,
        "after": after,
    }
    path = _write(out or circuit.parent / f"tune_{report.mode}.json", result)
    _table(f"circuit tuning ({report.mode})", *tune_table(before, after, report.__dict__))
    console.print(f"results: {path}")


def _tune_alignment(
    model: str, c, circuit: Path, data: Optional[Path], steps: int, lr: float, batch_size: int, out: Optional[Path]
) -> None:
    """SCT for alignment: refusal retention with the circuit frozen vs a random same-profile set frozen vs nothing frozen."""
    from steerlab.circuits.report import sct_table
    from steerlab.circuits.sct import tune_alignment
    from steerlab.data.chat import read_chat_pairs
    from steerlab.models.loading import load

    if data is None:
        raise SteerlabError("--scenario alignment needs --data FILE: benign chat rows to tune helpfulness on.")
    chat = read_chat_pairs(data, min_pairs=2)
    m = load(model)
    c.check_model(m)
    result = tune_alignment(m, c, chat.pairs, steps, lr, batch_size)
    result |= {"circuit": str(circuit), "data": str(data), "skipped_rows": chat.skipped}
    path = _write(out or circuit.parent / "sct_alignment.json", result)
    _table("Safety Circuit Tuning (alignment, held-out prompts)", *sct_table(result))
    console.print(f"results: {path}")


@circuits_app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="Run folder with circuit.json (and ablation.json, tune_*.json, find.json)."),
    organism: Optional[str] = typer.Option(None, help="Organism folder to include its build figures."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML path (default: RUN/report.html)."),
) -> None:
    """Write one self-contained HTML page: circuit size per kind and layer, head heat map, ablation table, tuning, curves."""
    from steerlab.circuits.report import write_report

    path = write_report(run, out or run / "report.html", organism)
    console.print(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Attach `steerlab circuits ...` to the root app."""
    app.add_typer(circuits_app, name="circuits")
