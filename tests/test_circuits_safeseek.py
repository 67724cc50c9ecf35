"""SafeSeek-compatible circuits on tiny random models: exact channel masks, training, sizes, CLI, bad input."""

import json

import pytest
import torch

import steerlab
from steerlab.circuits.data import backdoor_data
from steerlab.circuits.experiment import ablated
from steerlab.circuits.safeseek import (
    PROJECTIONS,
    SafeSeekConfig,
    channel_masks,
    find_safeseek,
    projection,
    signature,
    size_table,
    unit_widths,
)
from steerlab.circuits.units import Circuit, jaccard, random_circuit
from steerlab.errors import SteerlabError
from steerlab.testing import tiny_model


def _logits(model, ivs=()):
    ids = torch.tensor([model.encode("hello there, friend", chat=False)])
    with steerlab.apply(model, list(ivs)):
        return model.hf(input_ids=ids).logits


def _ones(model, widths):
    return {k: torch.ones(model.arch.n_layers, w) for k, w in widths.items()}


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_all_ones_reproduce_and_a_channel_mask_equals_zeroing_its_weight_row(tiny_factory, family):
    model = tiny_factory(family)
    widths = unit_widths(model, "post")
    assert (
        set(widths) == {"head_post", *PROJECTIONS} and widths["k_proj"] == model.arch.n_kv_heads * model.arch.head_dim
    )
    base = _logits(model)
    with channel_masks(model, _ones(model, widths)) as ivs:
        assert ivs == [] and torch.equal(_logits(model, ivs), base)
    block = model.arch.d_model // model.arch.n_heads
    for kind, rows in [("v_proj", slice(3, 4)), ("gate_proj", slice(5, 6)), ("head_post", slice(block, 2 * block))]:
        gates = _ones(model, widths)
        gates[kind][1, rows.start if kind != "head_post" else 1] = 0.0
        with channel_masks(model, gates) as ivs:
            masked = _logits(model, ivs)
        lin = projection(model, 1, "o_proj" if kind == "head_post" else kind)
        saved = lin.weight.detach().clone()
        saved_b = None if lin.bias is None else lin.bias.detach().clone()
        with torch.no_grad():
            lin.weight[rows] = 0.0
            if lin.bias is not None:
                lin.bias[rows] = 0.0
        try:
            reference = _logits(model)
        finally:
            with torch.no_grad():
                lin.weight.copy_(saved)
                if saved_b is not None:
                    lin.bias.copy_(saved_b)
        assert not torch.allclose(masked, base) and torch.allclose(masked, reference, atol=1e-5), kind
    assert not any(h for m in model.hf.modules() for h in m._forward_hooks.values())  # every hook removed


def test_pre_o_proj_heads_go_through_mask_units(tiny_factory):
    model = tiny_factory("llama")
    widths = unit_widths(model, "pre", neurons=False)
    gates = _ones(model, widths)
    gates["head"][0, 2] = 0.0
    with channel_masks(model, gates) as ivs:
        assert [(iv.layer, iv.kind) for iv in ivs] == [(0, "head")]


def test_find_extracts_sigma_above_half_at_the_best_validation_epoch(tiny_factory):
    model = tiny_model("llama")
    data = backdoor_data("Servius Astrumando Harmoniastra", "I am sorry.", 8, 4, 0.5, 0, 4)
    cfg = SafeSeekConfig(heads="post", epochs=2, batch_size=2, lr=0.5, n_val=4)
    result = find_safeseek(model, data, cfg, progress=False)
    c = result.circuit
    assert [h["epoch"] for h in result.history] == [0, 1]
    best = min(result.history, key=lambda h: h["val_task_loss"])
    assert result.best_epoch == best["epoch"] and c.meta["best_epoch"] == best["epoch"]
    for kind, z in result.logits.items():
        assert c.count(kind) == int((z > 0).sum()) == best["units"][kind]
    assert c.ablation == "zero" and c.kinds() == tuple(unit_widths(model, "post"))
    size = size_table(model, c)
    a = model.arch
    assert size["safeseek"]["neurons_total"] == a.n_layers * sum(
        projection(model, 0, n).out_features for n in PROJECTIONS
    )
    assert size["ours"]["mlp_neurons_total"] == a.n_layers * a.d_mlp
    r = random_circuit(c, 0)
    assert r.kinds() == c.kinds() and all(r.count(k) == c.count(k) for k in c.kinds())
    assert 0.0 <= jaccard(c, r) <= 1.0


def test_safeseek_circuit_units_and_mean_ablation(tiny_factory):
    model = tiny_factory("llama")
    widths = unit_widths(model, "pre")
    c = Circuit(
        signature(model, widths),
        {"q_proj": {0: [1, 2]}, "head": {1: [0]}},
        "sigmoid_ste_safeseek",
        "zero",
        {"compat": "safeseek"},
    )
    assert c.count("q_proj") == 2 and c.fraction() == pytest.approx(3 / (model.arch.n_layers * sum(widths.values())))
    c.check_model(model)
    with ablated(model, c, "removed", "zero", None) as ivs:
        assert len(ivs) == 1 and not torch.equal(_logits(model, ivs), _logits(model))
    with pytest.raises(SteerlabError, match="zero-ablated"):
        with ablated(model, c, "removed", "mean", {"x": 1}):
            pass


def test_cli_find_compat_safeseek_then_ablate(tmp_path, run_cli):
    folder, org, run = tmp_path / "tiny", tmp_path / "org", tmp_path / "run"
    m = tiny_model("llama")
    m.hf.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    code, text = run_cli(
        "circuits",
        "organism",
        "backdoor",
        str(folder),
        "--out",
        str(org),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--n-train",
        "8",
        "--n-test",
        "4",
        "--n-val",
        "4",
    )
    assert code == 0, text
    code, text = run_cli(
        "circuits",
        "find",
        str(org),
        "--compat",
        "safeseek",
        "--head-mask",
        "post",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out",
        str(run),
        "--lr",
        "0.5",
    )
    assert code == 0, text
    assert "SafeSeek's denominator" in text
    found = json.loads((run / "find.json").read_text())
    assert (
        found["compat"] == "safeseek"
        and "safeseek" in found["size"]
        and (run / "safeseek_logits.safetensors").is_file()
    )
    code, text = run_cli("circuits", "ablate", str(org), str(run / "circuit.json"))
    assert code == 0, text
    rows = json.loads((run / "ablation.json").read_text())["rows"]
    assert [(r["condition"], r["ablation"]) for r in rows] == [
        ("full model", "none"),
        ("circuit removed", "zero"),
        ("random circuit removed (seed 0)", "zero"),
    ]
    code, text = run_cli("circuits", "ablate", str(org), str(run / "circuit.json"), "--sweep", "default")
    assert code == 2 and "no size to sweep" in text
    code, text = run_cli("circuits", "report", str(run))
    assert code == 0, text
    assert "SafeSeek-compatible circuit: size in both denominators" in (run / "report.html").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["circuits", "find", "x", "--compat", "safeseak"], "Unknown --compat value 'safeseak'"),
        (["circuits", "find", "x", "--compat", "safeseek", "--scenario", "alignment"], "backdoor scenario only"),
        (["circuits", "find", "x", "--compat", "safeseek", "--head-mask", "mid"], "Unknown head mask"),
        (["circuits", "find", "x", "--compat", "safeseek", "-w", "overlap=1"], "Unknown SafeSeek objective"),
    ],
)
def test_bad_input_is_one_sentence(args, message, run_cli):
    code, text = run_cli(*args)
    assert code == 2 and message in text and "Traceback" not in text


def test_default_schedule_lets_a_unit_enter_the_circuit():
    # a logit pushed the same way at every step must be able to cross 0 (σ > 0.5) from its init within the
    # default training length (the organism's 96 training pairs in batches of 4, for the default epochs)
    from steerlab.circuits.safeseek import mask_optimizer

    cfg = SafeSeekConfig()
    steps = cfg.epochs * (96 // cfg.batch_size)
    z = torch.nn.Parameter(torch.full((1,), cfg.init))
    opt, sched = mask_optimizer([z], cfg.lr, steps)
    crossed = None
    for step in range(steps):
        z.grad = torch.full((1,), -1e-3)  # small and steady, as the task gradient of one unit
        opt.step()
        sched.step()
        if crossed is None and float(z) > 0:
            crossed = step
    assert crossed is not None and crossed < steps // 2, (crossed, float(z))
