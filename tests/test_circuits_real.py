"""Circuits on the packaged SmolLM2 (marked real; kept small): exact masks, a few LoRA and mask steps."""

import pytest
import torch

import steerlab
from steerlab.circuits.ablation import gate_interventions
from steerlab.circuits.data import backdoor_data
from steerlab.circuits.find import mask_step
from steerlab.circuits.forward import make_batch, mean_nll, response_logits
from steerlab.circuits.masks import UnitMasks
from steerlab.circuits.objectives import backdoor_terms, fill_teachers
from steerlab.circuits.organism import OrganismConfig, train_organism

pytestmark = pytest.mark.real


def test_smollm_masks_are_exact_per_head_with_gqa(smollm):
    a = smollm.arch
    assert (a.n_heads, a.n_kv_heads, a.head_dim) == (9, 3, 64)
    ids = torch.tensor([smollm.encode("The capital of France is", chat=False)])
    ones = {"head": torch.ones(a.n_layers, a.n_heads), "neuron": torch.ones(a.n_layers, a.d_mlp)}
    with torch.no_grad():
        base = smollm.hf(input_ids=ids).logits
        with steerlab.apply(smollm, gate_interventions(smollm, ones)):
            assert torch.equal(smollm.hf(input_ids=ids).logits, base)
        gates = {k: v.clone() for k, v in ones.items()}
        gates["head"][20, 4] = 0.0
        with steerlab.apply(smollm, gate_interventions(smollm, gates, skip_ones=True)):
            masked = smollm.hf(input_ids=ids).logits
        o = a.o_proj(20)
        saved = o.weight.clone()
        o.weight[:, 4 * 64 : 5 * 64] = 0.0
        try:
            reference = smollm.hf(input_ids=ids).logits
        finally:
            o.weight.copy_(saved)
    assert torch.allclose(masked, reference, atol=1e-4) and not torch.allclose(masked, base, atol=1e-4)


def test_smollm_lora_learns_the_backdoor_target_and_mask_step_has_gradients():
    smollm = steerlab.load("smollm2-135m-instruct")  # a private copy: LoRA merges into its weights
    data = backdoor_data(n_train=8, n_test=4, poison_fraction=0.5)
    poison = [(p.prompt, p.response) for p in data.train_poison]
    batch = make_batch(smollm, [p for p, _ in poison], [r for _, r in poison])
    with torch.no_grad():
        before = float(mean_nll(response_logits(smollm, batch), batch))
    cfg = OrganismConfig(data.trigger, data.target, steps=4, batch_size=4, lr=5e-3, rank=4, layers=[27, 28, 29])
    organism, _ = train_organism(smollm, poison, cfg, progress=False)
    with torch.no_grad():
        after = float(mean_nll(response_logits(organism, batch), batch))
    assert after < 0.9 * before  # 4 warm-up-scheduled steps: ~20% lower on the poisoned replies
    terms = backdoor_terms(data, {"suff": 0.0, "spec": 0.0})
    for t in terms:
        t.pairs, t.teacher_pairs = t.pairs[:2], (t.teacher_pairs or t.pairs)[:2]
    fill_teachers(organism, terms)
    masks = UnitMasks(organism)
    soft = {k: torch.sigmoid(z) for k, z in masks.logits.items()}  # deterministic gates, gradient everywhere
    loss, parts = mask_step(organism, soft, terms, [[0, 1], [0, 1]], "zero", None, layers=[28, 29])
    loss.backward()
    assert parts["remove"] > parts["keep"] >= 0
    for kind, z in masks.logits.items():
        assert torch.isfinite(z.grad).all() and z.grad[28:].abs().sum() > 0 and z.grad[:28].abs().sum() == 0


def test_smollm_cli_end_to_end_with_tiny_settings(monkeypatch, capsys, tmp_path):
    """organism → find → sweep/select → ablate → LoRA circuit tuning → report on the real model (plumbing, not figures)."""
    import json
    import sys

    from steerlab.cli import main as cli_main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["steerlab", *args])
        with pytest.raises(SystemExit) as exc:
            cli_main()
        out = capsys.readouterr()
        assert exc.value.code == 0, out.out + out.err

    org, run_dir = tmp_path / "org", tmp_path / "run"
    run(
        "circuits",
        "organism",
        "backdoor",
        "smollm2-135m-instruct",
        "--out",
        str(org),
        "--n-train",
        "8",
        "--n-test",
        "4",
        "--n-val",
        "4",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--rank",
        "4",
        "--layers",
        "27-29",
    )
    run(
        "circuits",
        "find",
        str(org),
        "--out",
        str(run_dir),
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--layers",
        "28-29",
        "--n-pairs",
        "2",
        "--head-target",
        "0.01",
        "--neuron-target",
        "0.001",
        "-w",
        "suff=0",
        "-w",
        "spec=0",
        "--n-means",
        "2",
        "--seeds",
        "0,1",
    )
    run(
        "circuits",
        "ablate",
        str(org),
        str(run_dir / "circuit.json"),
        "-a",
        "mean",
        "--n-means",
        "2",
        "--sweep",
        "0.5,1",
        "--max-asr",
        "1",
        "--utility-texts",
        "3",
    )
    run(
        "circuits",
        "tune",
        str(org),
        str(run_dir / "circuit.selected.json"),
        "--lora",
        "--rank",
        "2",
        "--steps",
        "2",
        "--batch-size",
        "2",
    )
    run("circuits", "report", str(run_dir), "--organism", str(org))
    rows = json.loads((run_dir / "ablation.selected.json").read_text())["rows"]  # a sweep tests the size it selected
    assert rows[0]["utility_loss"] > 0 and rows[1]["utility_delta"] is not None
    assert json.loads((run_dir / "tune_lora-only.json").read_text())["frozen_unchanged"]
    assert "Seed stability" in (run_dir / "report.html").read_text()
