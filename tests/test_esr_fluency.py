"""Drift, not breakage: degeneration on known cases, concept coherence, calibration that holds its target,
the fluent-latent filter, and the chat-answer corpus (resumable, seeded, disjoint instruction sets)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.esr.calibration import CalibrationSettings, Threshold, calibrate
from steerlab.esr.fluency import degenerate_rate, degeneration

DEGENERATE = {
    # from the demo run: word salad and loops
    "Rachel of the *Ler* (of the *B = E) of the *G = E) of of of of of": "loop",
    "Sure thing! hahahahahahahahaha": "loop",
    "The number is 100000000000000000 and then": "number_run",
    "2 4 6 8 10 12 14 16 and 18": "number_run",
    "the sky is blue the sky is blue the sky is blue": "loop",
    "*B = E) *G = E) ** ## $$ %% ok yes": "non_words",
    "Xzqwrtp bcdfghjklm qwrtzp xkcdfgh vbnmkl to the": "non_words",
}
FLUENT = (
    "To sort laundry, first separate whites from colours. Then check each label for the water temperature.",
    "Step 1: Mix 2 cups of flour with 1 cup of water. In 2023, about 1,000,000 people baked bread at home.",
    "The Roman Empire's roads, aqueducts and laws shaped Europe - and they still do today.",
    "Wait, that's not what you asked. Back to the question: fold the shirt in half, then in thirds.",
)


@pytest.mark.parametrize("text,kind", list(DEGENERATE.items()))
def test_degenerate_text_is_named(text, kind):
    assert degeneration(text) == kind


@pytest.mark.parametrize("text", FLUENT)
def test_fluent_text_passes(text):
    assert degeneration(text) is None


def test_degenerate_rate():
    assert degenerate_rate(list(DEGENERATE) + list(FLUENT)) == pytest.approx(
        len(DEGENERATE) / (len(DEGENERATE) + len(FLUENT))
    )
    assert degenerate_rate([]) == 0.0


def test_concept_coherence_separates_topic_from_token_latents():
    """A latent whose contexts share a topic scores above one whose contexts only share a word."""
    from steerlab.judges.embedder import packaged_embedder
    from steerlab.sae.concepts import coherence_scores

    contexts = {
        1: [
            "the oven was preheated to bake the bread",
            "knead the dough and let the bread rise",
            "a warm loaf of sourdough bread",
            "bake the rolls until the crust is golden",
        ],
        2: [
            "the history of the Roman empire",
            "a cup of tea",
            "one of the planets of the solar system",
            "the speed of light in a vacuum",
        ],
        3: [
            "the telescope pointed at a distant galaxy",
            "stars and planets orbit in the galaxy",
            "astronomers observed a supernova",
            "the night sky full of stars",
        ],
        4: ["only three"],
    }
    scores, chance = coherence_scores(contexts, packaged_embedder().embed)
    assert 4 not in scores  # too few contexts: no evidence either way
    assert scores[1] > scores[2] + 0.15 and scores[3] > scores[2] + 0.15
    assert -1.0 < chance < 1.0
    from steerlab.sae.concepts import ConceptScorer

    lazy = ConceptScorer(contexts, packaged_embedder().embed)
    assert lazy.score(4) is None and lazy.score(1) > lazy.score(2) + 0.15 and lazy.score(3) > lazy.score(2) + 0.15


def _all_or_nothing(b0, rng):
    def p_on(lat, b):
        return 1 / (1 + math.exp(-(b0[lat] - b) / 1.5))

    def measure(boosts, n):
        return {lat: [95.0 if rng.random() < p_on(lat, b) else 0.0 for _ in range(n)] for lat, b in boosts.items()}

    return measure, p_on


def test_correction_rounds_bring_missed_checks_back_to_the_target():
    """Isotonic: with a two-step search the first estimates miss; the corrected final checks land within tolerance
    more often."""
    b0 = {lat: 6.0 + 2 * lat for lat in range(16)}

    def miss_rate(corrections):
        measure, _ = _all_or_nothing(b0, random.Random(3))
        settings = CalibrationSettings(
            target=30,
            steps=2,
            prompts_per_step=4,
            lower=0,
            upper=60,
            prior_mean=10,
            prior_std=20,
            corrections=corrections,
            verify_prompts=8,
            estimator="isotonic",  # its per-latent tolerance corrections (the logistic path refits instead)
        )
        out = calibrate(list(b0), measure, settings)
        return sum(abs(t.achieved - 30) > 8 for t in out.values()), out

    missed_plain, _ = miss_rate(0)
    missed_corrected, out = miss_rate(3)
    assert missed_corrected < missed_plain
    assert any(t.corrections > 0 for t in out.values())


def test_final_check_records_degeneration():
    def measure(boosts, n):
        measure.last_texts = {
            lat: (["of of of of of"] * n if lat == 1 else ["A fluent sentence about cooking rice."] * n)
            for lat in boosts
        }
        return {lat: [30.0] * n for lat in boosts}

    out = calibrate([1, 2], measure, CalibrationSettings(steps=2, prompts_per_step=2, lower=0, upper=10))
    assert out[1].degenerate == 1.0 and out[1].degenerate_kinds == {"loop": 4}
    assert out[2].degenerate == 0.0 and out[2].degenerate_kinds == {}


def test_fluent_filter_drops_breaking_latents_and_errors_when_none_is_left(tmp_path):
    from steerlab.esr.config import EsrConfig
    from steerlab.esr.runner import fluent_latents

    th = {
        1: Threshold(1, 5.0, 30.0, False, degenerate=0.8),
        2: Threshold(2, 5.0, 30.0, False, degenerate=0.0),
        3: Threshold(3, 5.0, 30.0, False, degenerate=0.1),
    }
    cfg = EsrConfig(n_latents=1, max_degenerate=0.25)
    assert fluent_latents([1, 2, 3], th, cfg, tmp_path) == [2]
    saved = json.loads((tmp_path / "fluency.json").read_text())
    assert saved["dropped"] == [1, 3] and saved["degenerate"]["1"] == 0.8
    with pytest.raises(SteerlabError, match="No latent stays fluent"):
        fluent_latents([1], th, EsrConfig(latents=(1,)), tmp_path)


def test_instruction_sets_are_disjoint_from_every_evaluation_prompt():
    from steerlab.data.instructions import all_instructions, held_out_instructions, train_instructions
    from steerlab.esr import prompts as esr_prompts
    from steerlab.persona import prompts as persona_prompts

    everything = all_instructions()
    assert len(everything) > 1000 and len(set(everything)) == len(everything)
    train, held = train_instructions(), held_out_instructions()
    assert not set(train) & set(held) and len(held) >= 64
    others = set(
        esr_prompts.EVAL_PROMPTS
        + esr_prompts.DISCOVERY_PROMPTS
        + esr_prompts.TRAIN_PROMPTS
        + persona_prompts.EVAL_PROMPTS
        + persona_prompts.HELD_OUT_PROMPTS
    )
    assert not others & set(everything)
    assert not any(p.startswith(("Explain how to", "How do you")) for p in everything)


def test_chat_answers_resume_and_skip_torn_lines(tmp_path, tiny_factory):
    from steerlab.sae.chat_corpus import answer_documents, generate_answers, read_answers, rows_digest

    model = tiny_factory("llama")
    path = tmp_path / "answers.jsonl"
    calls = []

    def fake_generate(model, prompts, **kw):
        from types import SimpleNamespace

        calls.append((list(prompts), kw["temperature"], list(kw["seed"])))
        return [SimpleNamespace(text=f"answer to {p} at T={kw['temperature']}") for p in prompts]

    rows = generate_answers(model, ["a?", "b?"], path, generate_fn=fake_generate, batch_size=1)
    assert [r["mode"] for r in rows] == ["greedy", "sampled", "greedy", "sampled"]
    assert len(calls) == 4
    with path.open("a") as handle:
        handle.write('{"instruction": "torn')  # a killed run's half line
    again = generate_answers(model, ["a?", "b?", "c?"], path, generate_fn=fake_generate, batch_size=4)
    assert len(calls) == 6 and calls[-1][0] == ["c?"]  # only the new instruction, once per mode
    assert len(read_answers(path)) == 6
    assert rows_digest(again) == rows_digest(list(reversed(again)))
    docs = answer_documents(again)
    assert docs[0][0] == {"role": "user", "content": "a?"} and docs[0][1]["role"] == "assistant"
    with pytest.raises(SteerlabError, match="Unknown answer mode"):
        generate_answers(model, ["a?"], path, modes=("beam",), generate_fn=fake_generate)


def test_real_generator_rows_do_not_depend_on_their_batch(tmp_path, tiny_factory):
    from steerlab.engine.generate import generate
    from steerlab.sae.chat_corpus import generate_answers

    model = tiny_factory("llama")
    kw = dict(generate_fn=generate, max_new_tokens=6)
    one = generate_answers(model, ["x", "y", "z"], tmp_path / "one.jsonl", batch_size=1, **kw)
    three = generate_answers(model, ["x", "y", "z"], tmp_path / "three.jsonl", batch_size=3, **kw)
    assert [r["answer"] for r in one] == [r["answer"] for r in three]


def test_shipped_default_sae_loads_without_training(monkeypatch):
    """First use never trains: the shipped fp16 SAE loads, with its recipe, metrics, labels and concepts beside it."""
    from steerlab.sae import default as default_mod

    def no_training(*a, **k):
        raise AssertionError("first use must not train")

    monkeypatch.setattr(default_mod, "build_default", no_training)
    sae = default_mod.default_sae("smollm2-135m-instruct", train=False)
    folder = default_mod.default_dir("smollm2-135m-instruct")
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["key"] == default_mod.recipe("smollm2-135m-instruct").key()
    assert recipe["corpus"]["chat_share_chars"] > 0.5  # the model's own answers are the majority
    ev = json.loads((folder / "eval.json").read_text())
    assert set(ev) == {"chat_answers", "documentation"}
    assert (folder / "inspect" / "contexts.json").is_file() and (folder / "inspect" / "labels.csv").is_file()
    assert sae.d_sae == recipe["recipe"]["train"]["d_sae"] and sae.layer == recipe["recipe"]["train"]["layer"]
    assert all(f.stat().st_size < 25_000_000 for f in (folder / "sae").iterdir())
    assert sae.W_dec.dtype == torch.float32  # stored fp16, read as fp32


def test_rebuild_pipeline_on_a_tiny_model(tmp_path, monkeypatch):
    """The whole --rebuild path on a tiny model: own answers, mixed corpus, training, two evaluations, concepts, fp16 ship."""
    from dataclasses import replace

    from steerlab.sae import default as default_mod
    from steerlab.sae.train import TrainConfig
    from steerlab.testing import tiny_model

    m = tiny_model("llama")
    base = tmp_path / "tiny"
    m.hf.save_pretrained(base)
    m.tokenizer.save_pretrained(base)
    name = str(base)
    recipe = default_mod.DefaultRecipe(
        corpus=replace(
            default_mod.CorpusRecipe(),
            n_instructions=6,
            max_new_tokens=8,
            eval_instructions=4,
            eval_sampled=2,
            batch_size=8,
        ),
        train=TrainConfig(
            layer=1,
            d_sae=48,
            k=4,
            n_tokens=64 * 6,
            batch_size=64,
            buffer_tokens=512,
            context_len=32,
            checkpoint_every=0,
            held_out=0.3,
        ),
    )
    monkeypatch.setitem(default_mod.RECIPES, name, recipe)
    monkeypatch.setattr(default_mod, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(default_mod, "SHIPPED_ROOT", tmp_path / "shipped")
    import steerlab.data

    docs = steerlab.data.Corpus(
        "docs", [f"Document number {i} talks about topic {i % 7} in plain words." * 3 for i in range(200)]
    )
    monkeypatch.setattr(steerlab.data, "default_corpus", lambda: docs)
    from steerlab.engine.generate import generate

    sae = default_mod.build_default(
        name, generate_fn=generate, progress=False, eval_tokens=256, ce_tokens=64, inspect_tokens=500
    )
    folder = default_mod.rebuilt_dir(name)
    rec = json.loads((folder / "recipe.json").read_text())
    assert (
        rec["corpus"]["train_answers"] == 12 and rec["corpus"]["eval_answers"] == 6
    )  # greedy + sampled; 4 greedy + 2 sampled
    assert rec["corpus"]["chat_share_chars"] > 0.5 and rec["key"] == recipe.key()
    ev = json.loads((folder / "eval.json").read_text())
    assert {"chat_answers", "documentation"} == set(ev) and all(0 <= v["fvu"] < 10 for v in ev.values())
    assert (folder / "inspect" / "contexts.json").is_file()
    shipped = default_mod.ship(folder, name)
    assert (shipped / "inspect" / "labels.csv").is_file()
    again = default_mod.default_sae(name, train=False)
    assert torch.allclose(again.W_dec, sae.W_dec.half().float())
    # a second rebuild reuses the cached answers: same digests
    rows_before = (default_mod.answers_path(name, recipe.corpus)).read_text()
    default_mod.build_corpora(m, name, recipe.corpus, generate_fn=generate, progress=False)
    assert default_mod.answers_path(name, recipe.corpus).read_text() == rows_before


def test_rebuild_gets_its_generator_from_above(monkeypatch, run_cli):
    """The SAE layer never imports the engine: `sae default --rebuild` hands it the engine's generate, and a
    rebuild asked for without a generator says what to pass."""
    from steerlab.engine.generate import generate
    from steerlab.sae import default as default_mod

    seen = {}

    def fake_build(model_name, *, generate_fn, seed=0, **kw):
        seen.update(model=model_name, generate_fn=generate_fn, seed=seed)
        raise SteerlabError("stop here")

    monkeypatch.setattr(default_mod, "build_default", fake_build)
    code, out = run_cli("sae", "default", "smollm2-135m-instruct", "--rebuild", "--seed", "2")
    assert code == 2 and "stop here" in out
    assert seen == {"model": "smollm2-135m-instruct", "generate_fn": generate, "seed": 2}
    with pytest.raises(SteerlabError, match="generate_fn=steerlab.engine.generate.generate"):
        default_mod.default_sae("smollm2-135m-instruct", force=True)
