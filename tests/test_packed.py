"""The packed-weight (oneDNN) decode matmuls equal the plain fp32 model, see weight edits, and stay out of autograd."""

import pytest
import torch

import steerlab
from steerlab.engine import packed
from steerlab.engine.options import EngineOptions

pytestmark = pytest.mark.skipif(not packed.available(), reason="this torch has no oneDNN")

PROMPTS = ["How do you boil an egg?", "Hi", "Explain how to iron a shirt, step by step."]


def _used_packed(hf, run) -> bool:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return any("_linear_pointwise" in e.key for e in prof.key_averages())


def test_packed_linear_equals_f_linear_and_is_restored(tiny_factory):
    model = tiny_factory("llama")
    linear = next(m for m in model.hf.modules() if type(m) is torch.nn.Linear)
    x = torch.randn(4, 1, linear.in_features)
    with torch.inference_mode():
        plain = linear(x)
        with packed.packed_linears(model.hf) as n:
            assert n == sum(1 for m in model.hf.modules() if type(m) is torch.nn.Linear)
            assert _used_packed(model.hf, lambda: linear(x))
            fast = linear(x)
            many = torch.randn(packed.MAX_ROWS + 1, linear.in_features)
            assert not _used_packed(model.hf, lambda: linear(many))  # prefill-sized inputs keep F.linear
        assert "forward" not in linear.__dict__
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_generation_with_packed_matmuls_equals_the_plain_model(tiny_factory, monkeypatch):
    """Greedy tokens identical and log-probs equal to fp32 rounding, with per-row steering and a KV cache."""
    model = tiny_factory("llama")
    ivs = [steerlab.AddVector(1, torch.randn(3, model.arch.d_model), 2.0)]
    off, on = EngineOptions(packed=False), EngineOptions(packed=True)
    plain = steerlab.generate(model, PROMPTS, ivs, max_new_tokens=10, return_logprobs=True, engine_options=off)
    assert not _used_packed(
        model.hf, lambda: steerlab.generate(model, PROMPTS[:1], max_new_tokens=2, engine_options=off)
    )
    assert _used_packed(model.hf, lambda: steerlab.generate(model, PROMPTS[:1], max_new_tokens=2, engine_options=on))
    fast = steerlab.generate(model, PROMPTS, ivs, max_new_tokens=10, return_logprobs=True, engine_options=on)
    for a, b in zip(plain, fast):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-4)


def test_an_edited_weight_is_repacked():
    from steerlab.testing import tiny_model

    model = tiny_model("llama")  # its own copy: this test edits a weight
    linear = model.hf.lm_head
    x = torch.randn(2, 1, linear.in_features)
    with torch.inference_mode(), packed.packed_linears(model.hf):
        before = linear(x)
    with torch.no_grad():
        linear.weight.mul_(2.0)  # in place: same storage, new version
    with torch.inference_mode(), packed.packed_linears(model.hf):
        after = linear(x)
    torch.testing.assert_close(after, 2.0 * before, rtol=1e-5, atol=1e-4)
    import copy
    import pickle

    copy.deepcopy(model.hf)  # packed weights live outside the modules: models still copy and pickle
    pickle.dumps(model.hf)
    packed.release(model.hf)
    assert linear not in packed._PACKED


def test_autograd_keeps_the_plain_matmul(tiny_factory):
    model = tiny_factory("llama")
    linear = next(m for m in model.hf.modules() if type(m) is torch.nn.Linear)
    x = torch.randn(2, linear.in_features, requires_grad=True)
    with packed.packed_linears(model.hf):
        assert not _used_packed(model.hf, lambda: linear(x).sum().backward())
    assert x.grad is not None


def test_switched_off_by_environment_unless_the_call_says_otherwise(tiny_factory, monkeypatch):
    """STEERLAB_PACKED_MATMUL=0 sets the process's default off; an explicit option still wins, per call."""
    model = tiny_factory("llama")
    monkeypatch.setenv("STEERLAB_PACKED_MATMUL", "0")
    assert EngineOptions().packed is False
    assert not _used_packed(model.hf, lambda: steerlab.generate(model, PROMPTS[:1], max_new_tokens=2))
    assert _used_packed(
        model.hf,
        lambda: steerlab.generate(model, PROMPTS[:1], max_new_tokens=2, engine_options=EngineOptions(packed=True)),
    )
    monkeypatch.delenv("STEERLAB_PACKED_MATMUL")
    assert EngineOptions().packed is True
