"""The ESR organism on a tiny model: on-policy steered drift, loss never on the drift, steering on in training,
an adapter folder that steerlab.load reads, acknowledgements the heuristic judge's patterns miss, bad input."""

from __future__ import annotations

import json

import pytest
import torch

import steerlab
from steerlab.errors import SteerlabError
from steerlab.esr.organism import (
    ACKNOWLEDGEMENTS,
    OrganismConfig,
    build_organism,
    check_strengths,
    load_organism,
    organism_prompts,
    ship_organism,
    steering_context,
)
from steerlab.sae import Sae
from steerlab.sae.core import SaeConfig


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    from steerlab.testing import tiny_model

    m = tiny_model("llama")
    folder = tmp_path_factory.mktemp("base")
    m.hf.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    return folder


def _sae(model) -> Sae:
    return Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=32, layer=1), seed=0)


def test_acknowledgements_are_disjoint_from_the_heuristic_judges_patterns():
    from steerlab.judges.restarts import restart_positions, split_attempts

    for ack in ACKNOWLEDGEMENTS:
        text = f"The moon orbits the earth every month. {ack} To boil pasta, bring salted water to a boil."
        assert restart_positions(text) == [], ack
        assert len(split_attempts(text)) == 1


def test_organism_prompts_are_disjoint_from_every_esr_evaluation_and_discovery_prompt():
    from steerlab.esr.prompts import DISCOVERY_PROMPTS, EVAL_PROMPTS, TRAIN_PROMPTS

    prompts = organism_prompts(OrganismConfig())
    assert len(prompts) == len(set(prompts)) == len(TRAIN_PROMPTS) + OrganismConfig().extra_prompts
    assert not set(prompts) & (set(EVAL_PROMPTS) | set(DISCOVERY_PROMPTS))
    assert organism_prompts(OrganismConfig(extra_prompts=0)) == list(TRAIN_PROMPTS)
    with pytest.raises(SteerlabError, match="extra_prompts must not be negative"):
        OrganismConfig(extra_prompts=-1)


def test_strengths_must_be_finite_positive_and_in_range(tiny_factory):
    sae = _sae(tiny_factory("llama"))
    with pytest.raises(SteerlabError, match="finite positive"):
        check_strengths({3: float("nan")}, sae)
    with pytest.raises(SteerlabError, match="finite positive"):
        check_strengths({3: float("inf")}, sae)
    with pytest.raises(SteerlabError, match="out of range"):
        check_strengths({999: 2.0}, sae)
    with pytest.raises(SteerlabError, match="at least one"):
        check_strengths({}, sae)


def test_build_and_load_organism(base_folder, tmp_path):
    base = steerlab.load(str(base_folder))
    sae = _sae(base)
    cfg = OrganismConfig(
        drift_per_prompt=1,
        normal_per_prompt=1,
        drift_tokens=12,
        answer_tokens=12,
        epochs=1,
        batch_size=2,
        max_degenerate_tries=0,
    )
    prompts = ["Tell me about tea.", "Describe a river.", "What is a kite?"]
    # tiny random models babble: accept every drift as fluent here (the fluency rule has its own tests)
    import steerlab.esr.fluency as fluency

    orig = fluency.degeneration
    fluency.degeneration = lambda text: None
    try:
        tuned, record = build_organism(
            base,
            sae,
            {3: 4.0, 5: 6.0},
            tmp_path / "org",
            base_name=str(base_folder),
            cfg=cfg,
            prompts=prompts,
            progress=False,
            batch_size=4,
        )
    finally:
        fluency.degeneration = orig
    org = tmp_path / "org"
    assert (org / "adapter" / "adapter_model.safetensors").is_file() and (org / "data.jsonl").is_file()
    assert record["n_self_correction"] == 3 and record["n_normal"] == 3
    rows = [json.loads(line) for line in (org / "data.jsonl").read_text().splitlines()]
    for row in rows:
        if row["kind"] == "self_correction":
            assert (
                row["segments"][0]["trained"] is False and row["segments"][1]["trained"] is True
            )  # loss never on the drift
            assert row["latent"] in (3, 5) and row["strength"] in (4.0, 6.0)
            assert any(row["segments"][1]["text"].startswith(a) for a in ACKNOWLEDGEMENTS)
    # steerlab.load reads the folder: the same function as the tuned model in memory
    loaded = steerlab.load(str(org))
    ids = torch.tensor([base.encode("Tell me about tea.")])
    with torch.no_grad():
        a = tuned.hf(input_ids=ids).logits
        b = loaded.hf(input_ids=ids).logits
        c = base.hf(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)
    assert loaded.fingerprint()["revision"].startswith("adapter:")
    # shipping copies the organism, not an ESR run that shares its folder, and the copy loads the same model
    (org / "run.sqlite").write_bytes(b"not part of the organism")
    shipped = ship_organism(org, tmp_path / "shipped" / "organism-x")
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        ["adapter", "data.jsonl", "organism.json", "steerlab_adapter.json"]
    )
    with torch.no_grad():
        assert torch.allclose(steerlab.load(str(shipped)).hf(input_ids=ids).logits, a, atol=1e-4)
    with pytest.raises(SteerlabError, match="holds no organism"):
        ship_organism(tmp_path / "shipped", tmp_path / "elsewhere")
    # an organism folder for another base model is refused, in both directions
    with pytest.raises(SteerlabError, match="was trained on"):
        load_organism(org, base_name="smollm2-135m-instruct")
    with pytest.raises(SteerlabError, match="holds an organism of"):
        build_organism(
            base, sae, {3: 4.0}, org, base_name="smollm2-135m-instruct", cfg=cfg, prompts=prompts, progress=False
        )


def test_steering_is_active_in_the_training_forward(tiny_factory):
    """The trainer's forward_context steers each row with its own example's latent; unsteered rows are untouched."""
    from steerlab.esr.organism import OrganismExample

    model = tiny_factory("llama")
    sae = _sae(model)
    examples = [
        OrganismExample("p", (("x", True),), 3, 50.0, "self_correction"),
        OrganismExample("p", (("x", True),), None, 0.0, "normal"),
    ]
    ctx = steering_context(sae, examples)
    ids = torch.tensor([model.encode("hello there")] * 2)
    with torch.no_grad():
        plain = model.hf(input_ids=ids).logits
        with ctx(model, [0, 1]):
            steered = model.hf(input_ids=ids).logits
        with ctx(model, [1]):
            normal_only = model.hf(input_ids=ids[:1]).logits
    assert not torch.allclose(plain[0], steered[0], atol=1e-4)  # row 0 carries latent 3 at strength 50
    assert torch.allclose(plain[1], steered[1], atol=1e-5)  # row 1 (normal) is unsteered
    assert torch.allclose(plain[:1], normal_only, atol=1e-5)


def test_nonfinite_strength_is_refused_at_the_edge(tiny_factory):
    from steerlab.interventions.specs import AddVector, SteerLatent

    sae = _sae(tiny_factory("llama"))
    with pytest.raises(SteerlabError, match="finite"):
        SteerLatent(sae, latent=3, strength=float("nan"))
    with pytest.raises(SteerlabError, match="finite"):
        AddVector(layer=0, vector=torch.zeros(4), strength=float("inf"))


def _tiny_folder_and_sae(tmp_path):
    from steerlab.sae import save_sae
    from steerlab.testing import tiny_model

    m = tiny_model("llama")
    folder = tmp_path / "tiny"
    m.hf.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    sae_dir = save_sae(_sae(m), tmp_path / "sae")
    return folder, sae_dir


def test_cli_bad_input_one_sentence_exit_2(tmp_path, run_cli):
    folder, sae_dir = _tiny_folder_and_sae(tmp_path)
    # a steering strength that is not finite
    code, text = run_cli("generate", str(folder), "-p", "hi", "--steer", f"sae={sae_dir},latent=3,strength=nan")
    assert code == 2 and "finite" in text and "Traceback" not in text
    # an organism folder for another base model
    org = tmp_path / "org"
    org.mkdir()
    (org / "steerlab_adapter.json").write_text(json.dumps({"base_model": "gemma3-270m", "adapter": "adapter"}))
    code, text = run_cli("esr", "organism", str(org), "--model", str(folder), "--sae", str(sae_dir))
    assert code == 2 and "holds an organism of 'gemma3-270m'" in text and "Traceback" not in text
    code, text = run_cli("esr", "run", str(tmp_path / "run"), "--model", str(folder), "--max-degenerate", "1.5")
    assert code == 2 and "max_degenerate" in text


def test_cli_latent_list_with_no_fluent_latent(tmp_path, run_cli):
    """A tiny random model only babbles: with no tolerance for degenerate answers, no latent of the list survives."""
    folder, sae_dir = _tiny_folder_and_sae(tmp_path)
    code, text = run_cli(
        "esr",
        "run",
        str(tmp_path / "run"),
        "--model",
        str(folder),
        "--sae",
        str(sae_dir),
        "--latents",
        "3,5",
        "--max-degenerate",
        "0",
        "--calib-steps",
        "1",
        "--calib-prompts",
        "2",
        "--max-new-tokens",
        "24",
        "--prompts-per-latent",
        "1",
        "--calib-upper",
        "4",
    )
    assert code == 2 and "No latent stays fluent" in text and "Traceback" not in text
    saved = json.loads((tmp_path / "run" / "fluency.json").read_text())
    assert saved["kept"] == [] and sorted(saved["dropped"]) == [3, 5]
