"""A circuits run folder: the mask-seed loop of `find` and the size sweep of `ablate`, with their file names.

One find over several seeds writes, per seed, `circuit{S}.json`, `masks{S}.safetensors` and `find{S}.json`,
where S is "" for the first seed and ".seedN" for the others. A sweep over a circuit file reads the masks
with the same suffix and writes `sweep{S}.json` and `circuit.selected{S}.json`, so every seed's circuit is
found, sized and tested on its own, and the seeds' selected circuits can be compared (Jaccard).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from steerlab.circuits.ablation import Means
from steerlab.circuits.data import BackdoorData
from steerlab.circuits.experiment import select_size, sweep_sizes
from steerlab.circuits.find import Checkpoint, FindConfig, find_circuit
from steerlab.circuits.masks import load_logits, save_logits
from steerlab.circuits.objectives import Term
from steerlab.circuits.units import Circuit, jaccard
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import atomic_path
from steerlab.paths import write_json as write_json_atomic

DEFAULT_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)  # fixed before any test-split figure is seen


def write_json(path: Path, data) -> Path:
    """Write JSON atomically (UTF-8, a temporary file renamed into place), tensors and paths as strings."""
    return write_json_atomic(path, data, indent=1, default=str)


def seed_suffix(circuit_path: Path) -> str:
    """'' for circuit.json / circuit.selected.json, '.seed1' for circuit.seed1.json / circuit.selected.seed1.json."""
    parts = Path(circuit_path).name.split(".")
    return next((f".{p}" for p in parts if p.startswith("seed") and p[4:].isdigit()), "")


def companion(circuit_path: Path, stem: str, ext: str = "json") -> Path:
    """The file of the same seed beside a circuit: companion('run/circuit.seed1.json', 'masks', 'safetensors')."""
    return Path(circuit_path).parent / f"{stem}{seed_suffix(circuit_path)}.{ext}"


def parse_seeds(spec: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (distinct), else one sentence."""
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise SteerlabError(f"Cannot read the seeds '{spec}'; write integers like 0,1,2.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SteerlabError(f"Give one or more distinct seeds, like 0,1,2; got '{spec}'.")
    return seeds


def parse_scales(spec: str | None) -> list[float]:
    """'0.25,0.5,1,2' -> scales (positive); none or 'default' -> the default grid."""
    if not spec or spec.strip() == "default":
        return list(DEFAULT_SCALES)
    try:
        scales = [float(x) for x in spec.split(",")]
    except ValueError:
        raise SteerlabError(f"Cannot read the sweep '{spec}'; write scales like 0.25,0.5,1,2.") from None
    if not all(s > 0 for s in scales):
        raise SteerlabError(f"Sweep scales must be positive; got '{spec}'.")
    return scales


def mean_jaccard(circuits: Sequence[Circuit]) -> float | None:
    """Mean pairwise Jaccard overlap (None for fewer than two circuits)."""
    pairs = [jaccard(a, b) for i, a in enumerate(circuits) for b in circuits[i + 1 :]]
    return sum(pairs) / len(pairs) if pairs else None


@dataclass
class SeedRun:
    """What a multi-seed find wrote: one circuit per seed, and their overlap."""

    circuits: list[Circuit]
    paths: list[Path]
    jaccard: float | None
    pairwise: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, circuits: list[Circuit], paths: list[Path]) -> "SeedRun":
        """The seeds' circuits with their mean and pairwise Jaccard overlaps."""
        pairwise = {
            f"{a.meta.get('seed')}-{b.meta.get('seed')}": jaccard(a, b)
            for i, a in enumerate(circuits)
            for b in circuits[i + 1 :]
        }
        return cls(circuits, paths, mean_jaccard(circuits), pairwise)


def find_seeds(
    model: Model,
    terms_of: Callable[[], list[Term]],
    cfg: FindConfig,
    seeds: Sequence[int],
    out: Path,
    means: Means | None = None,
    scenario: str = "backdoor",
    data_meta: dict | None = None,
    progress: bool = True,
) -> SeedRun:
    """Train masks once per seed (fresh terms each time) and write each seed's circuit, logits and history.

    Args:
        terms_of: builds the objective terms (called per seed so no state leaks between seeds).
        seeds: mask seeds; the first writes circuit.json, the others circuit.seedN.json.
    Returns:
        the circuits, their paths and the mean pairwise Jaccard overlap.
    """
    out = Path(out)
    circuits, paths = [], []
    for seed in seeds:
        cfg.seed = seed
        terms = terms_of()
        suffix = "" if seed == seeds[0] else f".seed{seed}"
        record = find_record(model, cfg, terms, scenario, data_meta)
        done = finished_seed(out, suffix, record)
        if done is not None:  # resume: this seed's files exist and were written by the same search
            circuits.append(done)
            paths.append(out / f"circuit{suffix}.json")
            continue
        checkpoint = Checkpoint(out / f"find{suffix}.partial.pt", record)
        result = find_circuit(model, terms, cfg, means, progress=progress, checkpoint=checkpoint, scenario=scenario)
        save_logits(result.masks, out / f"masks{suffix}.safetensors")
        write_json(out / f"find{suffix}.json", record | {"history": result.history, "seconds": result.seconds})
        paths.append(result.circuit.save(out / f"circuit{suffix}.json"))  # written last: it marks the seed done
        checkpoint.remove()
        circuits.append(result.circuit)
    return SeedRun.of(circuits, paths)


def find_record(
    model: Model, cfg: FindConfig, terms: Sequence[Term], scenario: str, data_meta: dict | None = None
) -> dict:
    """What identifies one seed's search in find{S}.json: the model, the config, the scenario and the objective terms."""
    return {
        "model": model.name,
        "config": dict(cfg.__dict__),
        "scenario": scenario,
        "data": data_meta or {},
        "terms": [{"name": t.name, "weight": t.weight, "pairs": len(t.pairs)} for t in terms],
    }


def finished_seed(out: Path, suffix: str, record: dict) -> Circuit | None:
    """The circuit of a seed already found in `out` by the same search (same find record), else None (search again)."""
    files = [out / f"{stem}{suffix}.{ext}" for stem, ext in (("circuit", "json"), ("masks", "safetensors"))]
    found = out / f"find{suffix}.json"
    if not all(f.is_file() for f in [*files, found]):
        return None
    try:
        old = json.loads(found.read_text())
    except json.JSONDecodeError:
        return None
    same = json.loads(json.dumps(record, default=str))
    if any(old.get(k) != v for k, v in same.items()):
        return None
    return Circuit.load(files[0])


@dataclass
class SweepRun:
    """A size sweep on the validation split and the circuit it selected."""

    points: list[dict]
    selected: int
    selected_path: Path
    sweep_path: Path


def sweep_and_select(
    model: Model,
    data: BackdoorData,
    circuit_path: Path,
    scales: Sequence[float],
    means: Means | None,
    ablation: str = "mean",
    max_asr: float = 0.1,
    n_texts: int = 24,
    progress: bool = True,
) -> SweepRun:
    """Sweep circuit sizes (scale × the found size, top-k of the same seed's mask logits) on the validation split,
    keep the one with the least utility loss among those with ASR ≤ max_asr, and write it beside the circuit.

    Returns:
        the points, the selected index and the paths of sweep{S}.json and circuit.selected{S}.json.
    """
    circuit_path = Path(circuit_path)
    found = Circuit.load(circuit_path)
    if found.meta.get("compat") == "safeseek":
        raise SteerlabError(
            "A SafeSeek circuit is what σ > 0.5 gives at the best validation epoch; it has no size to sweep (drop --sweep)."
        )
    masks_path = companion(circuit_path, "masks", "safetensors")
    if not masks_path.is_file():
        raise SteerlabError(f"The sweep needs {masks_path} (written by `circuits find` beside {circuit_path.name}).")
    masks = load_logits(model, masks_path)
    start = time.perf_counter()
    points, circuits = sweep_sizes(
        model, data, masks, found, scales, means, ablation, n_texts=n_texts, progress=progress
    )
    best = select_size(points, max_asr)
    points[best]["selected"] = True
    chosen = circuits[best]
    chosen.ablation = ablation
    chosen.meta |= {"selected_on": "val", "max_asr": max_asr, "found": circuit_path.name}
    selected_path = chosen.save(companion(circuit_path, "circuit.selected"))
    sweep_path = write_json(
        companion(circuit_path, "sweep"),
        {
            "split": "val",
            "ablation": ablation,
            "max_asr": max_asr,
            "circuit": circuit_path.name,
            "points": points,
            "seconds": time.perf_counter() - start,
        },
    )
    return SweepRun(points, best, selected_path, sweep_path)


@dataclass
class FindInputs:
    """Everything a find needs besides its config: the model, a term builder, the ablation means, data notes."""

    model: Model
    terms_of: Callable[[], list[Term]]
    means: Means | None
    data_meta: dict


def prepare_find(
    model_path: str,
    scenario: str,
    organism: str | None = None,
    weights: dict[str, float] | None = None,
    n_pairs: int | None = None,
    n_means: int = 24,
    ablation: str = "mean",
) -> FindInputs:
    """Load the model and build the scenario's objective terms and ablation means (bad input fails before loading).

    Args:
        model_path: the model (for 'backdoor', an organism folder).
        scenario: 'backdoor' (terms from the organism's data) or 'alignment' (the model's own refusals).
        organism: the organism folder when it is not the model folder.
    """
    from steerlab.circuits.ablation import unit_means
    from steerlab.circuits.objectives import alignment_terms, backdoor_terms
    from steerlab.models.loading import load

    if scenario not in ("backdoor", "alignment"):
        raise SteerlabError(f"Unknown scenario '{scenario}'; choose backdoor or alignment.")
    if scenario == "backdoor":
        from steerlab.circuits.organism import load_organism

        _, data = load_organism(organism or model_path)
        backdoor_terms(data, weights, n_pairs)  # unknown term names fail before loading
        model = load(model_path)
        means = unit_means(model, [p.prompt for p in data.train_clean[:n_means]]) if ablation == "mean" else None
        return FindInputs(model, lambda: backdoor_terms(data, weights, n_pairs), means, {})
    from steerlab.circuits.alignment import refusal_pairs
    from steerlab.circuits.data import harmful_prompts, harmless_prompts

    alignment_terms([], [], weights)
    model = load(model_path)
    harmful, harmless = harmful_prompts("train"), harmless_prompts("train")
    pairs_h, pairs_b = refusal_pairs(model, harmful, harmless)  # train only on the refusals the model really gives
    means = unit_means(model, harmless[:n_means]) if ablation == "mean" else None
    return FindInputs(
        model,
        lambda: alignment_terms(pairs_h, pairs_b, weights),
        means,
        {"refused_train": len(pairs_h), "harmful_train": len(harmful)},
    )


def find_safeseek_seeds(
    model: Model, data: BackdoorData, cfg, seeds: Sequence[int], out: Path, progress: bool = True
) -> SeedRun:
    """`find --compat safeseek` over seeds: per seed circuit{S}.json, safeseek_logits{S}.safetensors and find{S}.json
    (with the circuit's size in SafeSeek's denominators beside ours)."""
    from safetensors.torch import save_file

    from steerlab.circuits.safeseek import find_safeseek, size_table

    out = Path(out)
    circuits, paths = [], []
    for seed in seeds:
        cfg.seed = seed
        result = find_safeseek(model, data, cfg, progress=progress)
        suffix = "" if seed == seeds[0] else f".seed{seed}"
        paths.append(result.circuit.save(out / f"circuit{suffix}.json"))
        with atomic_path(out / f"safeseek_logits{suffix}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in result.logits.items()}, str(tmp))
        write_json(
            out / f"find{suffix}.json",
            {
                "compat": "safeseek",
                "config": result.circuit.meta["config"],
                "scenario": "backdoor",
                "history": result.history,
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "size": size_table(model, result.circuit),
            },
        )
        circuits.append(result.circuit)
    return SeedRun.of(circuits, paths)
