"""The default SAE of each packaged model: shipped with steerlab, rebuilt on demand from its recorded recipe.

The recipe trains on a corpus whose majority is the model's *own chat answers* (greedy and sampled,
to the packaged instruction set `steerlab.data.instructions`), plus Python documentation text. The
trained SAE ships inside the package (`sae/shipped/<model>/`, fp16 safetensors) with `recipe.json`
(training config, corpus recipe, corpus digests), `eval.json` (held-out chat answers and held-out
documentation), its labels/frequencies and its latents' top contexts, so first use never trains.
`steerlab sae default --rebuild [--seed N]` regenerates the answers (cached, resumable), retrains and
re-evaluates into the user cache; that folder is used only when asked for (`rebuilt_dir`, `--sae`).
Rebuilding generates with the model, so its caller passes the generator (`generate_fn`, e.g.
`steerlab.engine.generate.generate`): the engine sits above the SAE layer.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from steerlab.errors import SteerlabError
from steerlab.models.gguf_cache import cache_root
from steerlab.paths import write_json
from steerlab.sae.core import Sae
from steerlab.sae.loading import load_sae
from steerlab.sae.train import TrainConfig

SHIPPED_ROOT = Path(__file__).parent / "shipped"


@dataclass(frozen=True)
class CorpusRecipe:
    """How the default SAE's corpus is built: the model's own answers plus a share of documentation text."""

    n_instructions: int = 64  # training instructions answered (from steerlab.data.instructions.train_instructions)
    modes: tuple[str, ...] = ("greedy", "sampled")
    sampled_instructions: int = 32  # of the training instructions, the first this many are also answered with sampling
    max_new_tokens: int = 160
    temperature: float = 0.8
    answer_seed: int = 0
    doc_share: float = 0.3  # documentation characters as a share of the whole corpus (answers are the rest)
    eval_instructions: int = 64  # held-out instructions (never trained on) answered greedily for evaluation
    eval_sampled: int = 0  # ... and the first of them answered with sampling too
    batch_size: int = 64


@dataclass(frozen=True)
class DefaultRecipe:
    """Everything that makes the default SAE: the corpus recipe and the training config."""

    corpus: CorpusRecipe
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {"corpus": asdict(self.corpus), "train": asdict(self.train)}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


# SmolLM2-135M: 30 layers, d_model 576. resid_post of layer 17 = after 18 of 30 layers (60% depth),
# 8x width, TopK k=32; data reuse trades scarce CPU forwards (and scarcer generated answers) for steps.
RECIPES: dict[str, DefaultRecipe] = {
    "smollm2-135m-instruct": DefaultRecipe(
        corpus=CorpusRecipe(),
        train=TrainConfig(
            layer=17,
            site="resid_post",
            arch="topk",
            d_sae=4608,
            k=32,
            n_tokens=256 * 500,
            batch_size=256,
            dead_after_tokens=51_200,
            lr=1e-3,
            warmup_steps=50,
            decay_fraction=0.3,
            buffer_tokens=32_768,
            reuse=5.0,
            context_len=128,
            checkpoint_every=100,
            seed=0,
            held_out=0.02,
        ),
    ),
}


def recipe(model_name: str, seed: int = 0) -> DefaultRecipe:
    """The default recipe of a packaged model (seed changes only the SAE initialisation and data order)."""
    if model_name not in RECIPES:
        raise SteerlabError(
            f"No default SAE recipe for '{model_name}'; known: {', '.join(RECIPES)}. Train one with `steerlab sae train`."
        )
    r = RECIPES[model_name]
    return r if seed == 0 else replace(r, train=replace(r.train, seed=int(seed)))


def shipped_dir(model_name: str) -> Path:
    """The folder of the SAE that ships with steerlab for this model."""
    return SHIPPED_ROOT / model_name


def rebuilt_dir(model_name: str, seed: int = 0) -> Path:
    """Where `--rebuild` writes the default recipe's SAE (the user cache, keyed by recipe and seed)."""
    r = recipe(model_name, seed)
    cfg = r.train
    return cache_root() / "saes" / model_name / f"L{cfg.layer}-{cfg.site}-{cfg.arch}{cfg.d_sae}-k{cfg.k}-{r.key()}"


def default_dir(model_name: str) -> Path:
    """The folder of the default SAE: the shipped one (sae/, recipe.json, eval.json, inspect/)."""
    recipe(model_name)
    return shipped_dir(model_name)


def default_sae(
    model_name: str = "smollm2-135m-instruct",
    *,
    train: bool = True,
    force: bool = False,
    progress: bool = True,
    generate_fn: Callable | None = None,
) -> Sae:
    """The default SAE of a packaged model: the shipped one (never trains on first use).

    force: rebuild it from its recipe into the user cache and return that one (as `--rebuild`).
    generate_fn: the generator a rebuild needs (force, or train when the shipped SAE is missing).
    """
    folder = default_dir(model_name)
    if force:
        return build_default(model_name, generate_fn=_needs_generator(generate_fn, model_name), progress=progress)
    if (folder / "sae" / "cfg.json").is_file():
        sae = load_sae(folder / "sae")
        sae.source = f"default:{model_name}"
        return sae
    if not train:
        raise SteerlabError(
            f"The default SAE for '{model_name}' is missing from {folder}; run `steerlab sae default {model_name} --rebuild`."
        )
    return build_default(model_name, generate_fn=_needs_generator(generate_fn, model_name), progress=progress)


def _needs_generator(generate_fn: Callable | None, model_name: str) -> Callable:
    if generate_fn is None:
        raise SteerlabError(
            f"Rebuilding the default SAE for '{model_name}' generates with the model; pass "
            f"generate_fn=steerlab.engine.generate.generate, or run `steerlab sae default {model_name} --rebuild`."
        )
    return generate_fn


def answers_path(model_name: str, corpus: CorpusRecipe) -> Path:
    """The JSONL cache of the model's own answers for a corpus recipe."""
    return (
        cache_root()
        / "chat_answers"
        / model_name
        / f"answers-t{corpus.max_new_tokens}-T{corpus.temperature:g}-s{corpus.answer_seed}.jsonl"
    )


def _digest(docs: list) -> str:
    return hashlib.sha256(json.dumps(docs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def build_corpora(
    model, model_name: str, corpus: CorpusRecipe, *, generate_fn: Callable, progress: bool = True
) -> dict[str, Any]:
    """Generate (or reuse) the answers with generate_fn, then mix the training corpus; returns corpora and digests."""
    from steerlab.data import default_corpus
    from steerlab.data.corpus import Corpus
    from steerlab.data.instructions import held_out_instructions, train_instructions
    from steerlab.progress import console
    from steerlab.sae.chat_corpus import answer_documents, generate_answers, rows_digest

    path = answers_path(model_name, corpus)
    shipped_answers = shipped_dir(model_name) / "answers.jsonl"
    if (
        not path.is_file() and shipped_answers.is_file()
    ):  # the shipped SAE's own answers: a rebuild reuses them (digests recorded)
        from steerlab.paths import write_bytes

        write_bytes(path, shipped_answers.read_bytes())
    train_prompts = train_instructions()[: corpus.n_instructions]
    eval_prompts = held_out_instructions()[: corpus.eval_instructions]
    if set(train_prompts) & set(eval_prompts):
        raise SteerlabError("The held-out instructions overlap the training instructions.")

    def say(done: int, total: int) -> None:
        if progress:
            console.print(f"  answers {done}/{total}")

    kw = dict(
        max_new_tokens=corpus.max_new_tokens,
        temperature=corpus.temperature,
        seed=corpus.answer_seed,
        batch_size=corpus.batch_size,
        progress=say,
        generate_fn=generate_fn,
    )
    eval_rows = generate_answers(model, eval_prompts, path, modes=("greedy",), **kw)
    eval_rows += generate_answers(model, eval_prompts[: corpus.eval_sampled], path, modes=("sampled",), **kw)
    train_rows = []
    if "greedy" in corpus.modes:
        train_rows += generate_answers(model, train_prompts, path, modes=("greedy",), **kw)
    if "sampled" in corpus.modes:
        train_rows += generate_answers(
            model, train_prompts[: corpus.sampled_instructions], path, modes=("sampled",), **kw
        )
    chat_train = answer_documents(train_rows)
    chat_eval = answer_documents(eval_rows)
    docs_train, docs_eval = default_corpus().split(0.05)
    chat_chars = sum(len(m["content"]) for d in chat_train for m in d)
    budget = chat_chars * corpus.doc_share / (1.0 - corpus.doc_share)
    pool = list(docs_train.documents)
    random.Random(corpus.answer_seed).shuffle(pool)
    docs: list = []
    used = 0
    for d in pool:
        if used >= budget:
            break
        docs.append(d)
        used += len(d) if isinstance(d, str) else sum(len(m["content"]) for m in d)
    mixed = chat_train + docs
    random.Random(corpus.answer_seed + 1).shuffle(mixed)
    return {
        "train": Corpus("default-chat-mix", mixed),
        "chat_eval": chat_eval,
        "docs_eval": docs_eval.documents,
        "record": {
            "answers_file": path.name,
            "train_answers": len(chat_train),
            "eval_answers": len(chat_eval),
            "train_answers_digest": rows_digest(train_rows),
            "eval_answers_digest": rows_digest(eval_rows),
            "doc_documents": len(docs),
            "doc_chars": used,
            "chat_chars": chat_chars,
            "chat_share_chars": round(chat_chars / max(chat_chars + used, 1), 3),
            "mixed_digest": _digest(mixed),
            "docs_eval_digest": _digest(docs_eval.documents),
        },
    }


def evaluate_default(
    model,
    sae: Sae,
    chat_eval: list,
    docs_eval: list,
    *,
    chat_tokens: int = 4_096,
    chat_ce: int = 1_024,
    doc_tokens: int = 2_048,
    doc_ce: int = 512,
) -> dict:
    """FVU / L0 / dead / CE recovered on held-out chat answers and on held-out documentation (sized for a CPU)."""
    from steerlab.sae.evaluate import evaluate_sae

    return {
        "chat_answers": evaluate_sae(model, sae, chat_eval, n_tokens=chat_tokens, ce_tokens=chat_ce).to_dict(),
        "documentation": evaluate_sae(model, sae, docs_eval, n_tokens=doc_tokens, ce_tokens=doc_ce).to_dict(),
    }


def build_default(
    model_name: str,
    *,
    generate_fn: Callable,
    seed: int = 0,
    out: Path | None = None,
    progress: bool = True,
    eval_tokens: int = 4_096,
    ce_tokens: int = 1_024,
    inspect_tokens: int = 4_000,
) -> Sae:
    """Rebuild the default SAE from its recipe: answers, corpus mix, training, evaluation, labels (resumable).

    generate_fn: the batched generator that writes the model's own answers (e.g. steerlab.engine.generate.generate).
    """
    from steerlab.models.loading import load
    from steerlab.sae.inspect import inspect_sae
    from steerlab.sae.train import train_sae

    r = recipe(model_name, seed)
    folder = Path(out) if out is not None else rebuilt_dir(model_name, seed)
    model = load(model_name)
    corpora = build_corpora(model, model_name, r.corpus, generate_fn=generate_fn, progress=progress)
    result = train_sae(model, corpora["train"], r.train, folder, resume=True, progress=progress)
    ev = evaluate_default(
        model,
        result.sae,
        corpora["chat_eval"],
        corpora["docs_eval"],
        chat_tokens=eval_tokens,
        chat_ce=ce_tokens,
        doc_tokens=eval_tokens // 2,
        doc_ce=ce_tokens // 2,
    )
    write_json(folder / "eval.json", ev)
    write_json(
        folder / "recipe.json",
        {
            "model": model_name,
            "recipe": r.to_dict(),
            "key": r.key(),
            "corpus": corpora["record"],
            "rebuild": f"steerlab sae default {model_name} --rebuild --seed {seed}",
        },
    )
    reports = inspect_sae(
        model, result.sae, corpora["chat_eval"] + corpora["docs_eval"], folder / "inspect", n_tokens=inspect_tokens
    )
    write_concepts(reports, folder / "inspect" / "contexts.json")
    return load_sae(folder / "sae")


def write_concepts(reports, path: Path, per_latent: int = 5) -> dict:
    """Each alive latent's top contexts (inspect/contexts.json): ESR selection embeds them lazily for concept evidence."""
    data = {
        "contexts": {str(r.index): [c.text for c in r.contexts[:per_latent]] for r in reports if r.frequency > 0},
        "per_latent": per_latent,
        "note": "top-activating contexts; steerlab.sae.concepts.ConceptScorer rates their agreement",
    }
    write_json(path, data)
    return data


def ship(folder: Path, model_name: str) -> Path:
    """Copy a built default SAE into the package as fp16 (sae/, recipe.json, eval.json, metrics, labels, frequencies)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    dest = shipped_dir(model_name)
    (dest / "sae").mkdir(parents=True, exist_ok=True)
    (dest / "inspect").mkdir(parents=True, exist_ok=True)
    for f in (folder / "sae").iterdir():
        if f.suffix == ".safetensors":
            save_file({k: v.to(torch.float16).contiguous() for k, v in load_file(f).items()}, dest / "sae" / f.name)
        elif f.is_file():
            shutil.copy(f, dest / "sae" / f.name)
    for name in ("recipe.json", "eval.json", "metrics.json", "train_config.json"):
        if (folder / name).is_file():
            shutil.copy(folder / name, dest / name)
    for name in ("labels.csv", "frequencies.json", "contexts.json"):
        shutil.copy(folder / "inspect" / name, dest / "inspect" / name)
    answers = answers_path(model_name, recipe(model_name).corpus)
    if (
        answers.is_file()
    ):  # the answers it was trained and evaluated on (rebuilds reuse them; tests re-evaluate on them)
        shutil.copy(answers, dest / "answers.jsonl")
    return dest
