"""Every fast path still equals the plain fp32 path after the weights change in place.

Each case: generate on the fast paths (the packed oneDNN matmuls cache their weights), change the
weights one way, generate again, and compare with the plain path (no packed matmuls, no shared
prefix, no preallocated cache) and with a fresh load of the saved model. The model's fingerprint must
change too, so run stores and threshold caches never mix the two weight sets.
"""

from __future__ import annotations

import pytest
import torch

import steerlab
from steerlab.engine.options import EngineOptions
from steerlab.testing import tiny_model

PROMPTS = ["How do you boil an egg?", "Hi there", "Explain how to iron a shirt, step by step."]
PAIRS = [
    ("Say hi", "Hello! How can I help?"),
    ("Name a colour", "Blue is a colour."),
    ("Count to three", "One, two, three."),
]


def _steering(model):
    """Per-row steering (so the per-row hooks and the shared-prefix split are on) plus one plain row."""
    g = torch.Generator().manual_seed(7)
    vec = torch.randn(model.arch.d_model, generator=g)
    return [[steerlab.AddVector(1, vec, 2.0)], [], [steerlab.AddVector(2, -vec, 1.0, positions="generated")]]


def _generate(model, fast: bool, monkeypatch):
    speed = EngineOptions.fastest() if fast else EngineOptions.plain()
    assert all(speed.to_dict().values()) == fast  # every fast path on, or every one off
    return steerlab.generate(
        model, PROMPTS, _steering(model), max_new_tokens=8, return_logprobs=True, engine_options=speed
    )


def _same(a, b, label):
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.token_ids == y.token_ids, f"{label}: row {i} tokens differ"
        torch.testing.assert_close(
            x.logprobs, y.logprobs, rtol=1e-4, atol=1e-4, msg=f"{label}: row {i} log-probs differ"
        )


def _moved(a, b) -> bool:
    return any(
        x.token_ids != y.token_ids or not torch.allclose(x.logprobs, y.logprobs, atol=1e-3) for x, y in zip(a, b)
    )


def _check(model, mutate, monkeypatch, tmp_path):
    before = _generate(model, True, monkeypatch)  # fills the packed-weight cache
    fingerprint = model.fingerprint()
    model = mutate(model) or model
    fast = _generate(model, True, monkeypatch)
    plain = _generate(model, False, monkeypatch)
    assert _moved(before, plain), "the mutation did not change the model's output; the case proves nothing"
    _same(fast, plain, "fast path vs plain path after the mutation")
    assert model.fingerprint() != fingerprint, "a changed model kept its fingerprint"
    model.hf.save_pretrained(tmp_path / "saved")
    model.tokenizer.save_pretrained(tmp_path / "saved")
    fresh = steerlab.load(str(tmp_path / "saved"))
    _same(fast, _generate(fresh, True, monkeypatch), "fast path vs a fresh load of the saved model")
    assert fresh.fingerprint()["weights"] == model.fingerprint()["weights"]


def _noise(t: torch.Tensor, seed: int, scale: float = 0.5) -> torch.Tensor:
    return scale * t.abs().mean() * torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))


def _mlp_weights(model):
    return [layer.mlp.up_proj.weight for layer in model.hf.model.layers] + [model.hf.lm_head.weight]


def test_data_edit_in_place(monkeypatch, tmp_path):
    def mutate(model):
        for i, w in enumerate(_mlp_weights(model)):
            w.data.add_(_noise(w, i))  # through .data: neither pointer nor version counter moves

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


def test_data_assignment(monkeypatch, tmp_path):
    def mutate(model):
        for i, w in enumerate(_mlp_weights(model)):
            w.data = w.data + _noise(w, i)

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


def test_data_copy_of_the_same_shape_into_the_same_storage(monkeypatch, tmp_path):
    def mutate(model):
        other = tiny_model("llama", seed=3)
        for (name, w), (_, v) in zip(model.hf.named_parameters(), other.hf.named_parameters()):
            w.data.copy_(v.data)

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


def test_load_state_dict(monkeypatch, tmp_path):
    def mutate(model):
        model.hf.load_state_dict(tiny_model("llama", seed=5).hf.state_dict())

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


def test_peft_lora_merge(monkeypatch, tmp_path):
    from peft import LoraConfig, get_peft_model

    def mutate(model):
        peft_model = get_peft_model(
            model.hf, LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj", "o_proj", "down_proj"])
        )
        with torch.no_grad():
            for i, (name, p) in enumerate(peft_model.named_parameters()):
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.5)
        merged = peft_model.merge_and_unload()
        assert merged is model.hf  # the merge rewrote the same modules' weights
        merged.eval()

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


def test_full_weight_training_step(monkeypatch, tmp_path):
    def mutate(model):
        opt = torch.optim.SGD(model.hf.parameters(), lr=5.0)
        ids = torch.tensor([model.encode("Hello there, how are you?")])
        with torch.enable_grad():
            for p in model.hf.parameters():
                p.requires_grad_(True)
            model.hf(input_ids=ids, labels=ids).loss.backward()
            opt.step()
        for p in model.hf.parameters():
            p.requires_grad_(False)

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


@pytest.mark.parametrize("in_place", [True, False])
def test_shared_lora_trainer(monkeypatch, tmp_path, in_place):
    """steerlab.training.train_lora: the trainer behind the persona organisms, re-alignment and the circuit organisms."""
    from steerlab.training import LoraRecipe, encode_pair, train_lora

    def mutate(model):
        examples = [encode_pair(model, p, r) for p, r in PAIRS]
        tuned, _ = train_lora(
            model, examples, LoraRecipe(rank=4, lr=5e-2, steps=6, batch_size=3), in_place=in_place, progress=False
        )
        return tuned

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


@pytest.mark.parametrize("lora", [False, True])
def test_circuit_tuning(monkeypatch, tmp_path, lora):
    """steerlab.circuits' Safety Circuit Tuning, full-weight and LoRA, both in place."""
    from steerlab.circuits import Circuit, Unit
    from steerlab.circuits.tune import tune_circuit, tune_circuit_lora

    def mutate(model):
        circuit = Circuit.from_units(
            model, [Unit(1, "neuron", i) for i in range(40)] + [Unit(2, "head", 0), Unit(2, "head", 1)]
        )
        if lora:
            report = tune_circuit_lora(model, circuit, PAIRS, steps=6, lr=5e-2, batch_size=3, progress=False)
        else:
            report = tune_circuit(model, circuit, PAIRS, steps=6, lr=5e-2, batch_size=3, progress=False)
        assert report.changed_entries > 0 and report.frozen_unchanged

    _check(tiny_model("llama"), mutate, monkeypatch, tmp_path)


@pytest.mark.real
def test_packaged_model_follows_data_edits(monkeypatch):
    """The issue's reproduction on SmolLM2: generate, add noise to ten layers' up_proj through .data, generate again."""
    model = steerlab.load("smollm2-135m-instruct")  # its own copy: this test edits weights
    prompt = ["How do you sort laundry before washing it?"]

    def run(fast: bool):
        speed = EngineOptions.fastest() if fast else EngineOptions.plain()
        return steerlab.generate(model, prompt, max_new_tokens=12, return_logprobs=True, engine_options=speed)

    before = run(True)
    for i, layer in enumerate(model.hf.model.layers[10:20]):
        w = layer.mlp.up_proj.weight
        w.data.add_(_noise(w, i, scale=2.0))
    fast, plain = run(True), run(False)
    assert _moved(before, plain)
    _same(fast, plain, "SmolLM2 after a .data edit")
