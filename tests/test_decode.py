"""The direct one-token decode step (engine.decode) equals the SDPA path and the plain fp32 engine."""

import pytest
import torch

import steerlab
from steerlab import AddVector, MaskUnits, Record
from steerlab.engine import decode
from steerlab.engine.options import EngineOptions
from steerlab.testing import tiny_model

PROMPTS = ["How do you boil an egg?", "Hi", "Explain how to iron a shirt, step by step.", "Name three rivers"]
DIRECT_ONLY = EngineOptions(packed=False, share_prefix=False, preallocate=False, direct_decode=True)
ALL_ON = EngineOptions.fastest()


def _steps_run(monkeypatch) -> list[int]:
    """Counts direct-path layer steps (each one rotates its query and key once)."""
    calls: list[int] = []
    real = decode._rotate
    monkeypatch.setattr(decode, "_rotate", lambda *a: calls.append(1) or real(*a))
    return calls


def _fused_calls(monkeypatch) -> list[int]:
    """Counts fused packed matmuls (one per q/k/v group, one per gate/up group)."""
    from steerlab.engine import packed

    calls: list[int] = []
    real = packed.Fused.__call__
    monkeypatch.setattr(packed.Fused, "__call__", lambda self, x: calls.append(1) or real(self, x))
    return calls


def test_a_hooked_projection_is_not_fused(tiny_factory, monkeypatch):
    """A hook on k_proj or up_proj must see its own layer run: that group falls back to the separate layers."""
    model = tiny_model("llama", seed=6)
    attn, mlp = model.hf.model.layers[1].self_attn, model.hf.model.layers[0].mlp
    handles = [
        attn.k_proj.register_forward_hook(lambda m, a, out: out * 0.5),
        mlp.up_proj.register_forward_pre_hook(lambda m, a: (a[0] * 2.0,)),
    ]
    try:
        plain = _generate(model, [], EngineOptions.plain())
        fused = _fused_calls(monkeypatch)
        fast = _generate(model, [], ALL_ON)
    finally:
        for h in handles:
            h.remove()
    _same(plain, fast)
    assert len(fused) == (2 * model.arch.n_layers - 2) * 9  # every group but the two hooked ones, every step
    assert any(a.token_ids != b.token_ids for a, b in zip(fast, _generate(model, [], ALL_ON)))  # hooks bite


def _generate(model, ivs, speed, **kw):
    return steerlab.generate(model, PROMPTS, ivs, max_new_tokens=10, return_logprobs=True, engine_options=speed, **kw)


def _same(a, b):
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids
        torch.testing.assert_close(x.logprobs, y.logprobs, rtol=1e-4, atol=1e-4)
        assert x.records.keys() == y.records.keys()
        for name in x.records:
            torch.testing.assert_close(x.records[name], y.records[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
def test_direct_decode_equals_the_plain_engine(tiny_factory, monkeypatch, family):
    """Alone against the oracle's loop (every speed path off), and with the other speed paths on."""
    model = tiny_factory(family)
    assert len(decode.eligible(model)) == model.arch.n_layers
    ivs = [AddVector(1, torch.randn(len(PROMPTS), model.arch.d_model, generator=torch.Generator().manual_seed(1)), 3.0)]
    plain = _generate(model, ivs, EngineOptions.plain())
    calls = _steps_run(monkeypatch)
    direct = _generate(model, ivs, DIRECT_ONLY)
    assert len(calls) == 2 * model.arch.n_layers * 9  # q and k, every layer, every decode step after the prefill
    _same(plain, direct)
    fused = _fused_calls(monkeypatch)
    _same(plain, _generate(model, ivs, ALL_ON))  # with packed weights: q/k/v and gate/up fused
    assert len(fused) == 2 * model.arch.n_layers * 9
    assert all("forward" not in m.__dict__ for m in decode.eligible(model))  # the original forwards are back


def test_hooks_inside_the_attention_still_run(tiny_factory):
    """Per-row head masks (o_proj's input), attention-output and residual records, with rows of unequal length."""
    model = tiny_factory("llama")
    heads = torch.ones(len(PROMPTS), model.arch.n_heads)
    heads[0, 1] = heads[2, 0] = 0.0
    ivs = [
        MaskUnits(1, "head", heads),
        AddVector(0, torch.randn(model.arch.d_model, generator=torch.Generator().manual_seed(2)), 2.0),
        Record(1, site="attn_out", positions="generated", name="attn"),
        Record(2, positions="all", name="resid"),
    ]
    plain = _generate(model, ivs, EngineOptions.plain())
    direct = _generate(model, ivs, DIRECT_ONLY)
    _same(plain, direct)
    assert all(g.records["attn"].shape[0] > 0 for g in direct)


def test_sampled_rows_and_unpadded_batches(tiny_factory):
    """Temperature sampling with per-row seeds; a batch of equal-length rows (no mask at all)."""
    model = tiny_factory("qwen3")
    vec = torch.randn(model.arch.d_model, generator=torch.Generator().manual_seed(3))
    kw = dict(temperature=0.9, top_p=0.9, seed=[4, 5, 6, 7])
    plain = _generate(model, [AddVector(1, vec, 2.0)], EngineOptions.plain(), **kw)
    _same(plain, _generate(model, [AddVector(1, vec, 2.0)], DIRECT_ONLY, **kw))
    same_length = ["one two", "six ten", "red sea", "big cat"]
    assert len({len(model.encode(p, chat=False)) for p in same_length}) == 1
    runs = [
        steerlab.generate(model, same_length, max_new_tokens=8, return_logprobs=True, chat=False, engine_options=speed)
        for speed in (EngineOptions.plain(), DIRECT_ONLY)
    ]
    _same(*runs)


def test_eager_mask_format_and_a_sliding_window(monkeypatch):
    """An additive float mask (eager attention) and Mistral with a window shorter than the rows."""
    llama = tiny_model("llama", seed=4)
    llama.hf.config._attn_implementation = "eager"
    ivs = [AddVector(1, torch.randn(len(PROMPTS), llama.arch.d_model), 2.0)]
    calls = _steps_run(monkeypatch)
    _same(_generate(llama, ivs, EngineOptions.plain()), _generate(llama, ivs, DIRECT_ONLY))
    assert calls
    mistral = tiny_model("mistral", seed=4)
    mistral.hf.config.sliding_window = 4
    windowed = _generate(mistral, [], DIRECT_ONLY)
    _same(_generate(mistral, [], EngineOptions.plain()), windowed)
    mistral.hf.config.sliding_window = None
    assert any(a.token_ids != b.token_ids for a, b in zip(windowed, _generate(mistral, [], DIRECT_ONLY)))  # it bites


def test_unsupported_models_and_autograd_keep_the_original_forward(tiny_factory, monkeypatch):
    from steerlab.engine.forward import cache_kwarg

    gemma = tiny_factory("gemma3")
    assert decode.eligible(gemma) == []
    with decode.direct_decode(gemma) as n:
        assert n == 0
    from steerlab.testing import tiny_model

    model = tiny_model("llama")  # its own copy: the session's shared tiny model may have been frozen by another test
    with decode.direct_decode(model, enabled=False) as n:
        assert n == 0
    name = cache_kwarg(model.hf)
    calls = _steps_run(monkeypatch)
    with decode.direct_decode(model) as n:
        assert n == model.arch.n_layers
        out = model.hf(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True)
        step = model.hf(input_ids=torch.tensor([[8]]), **{name: getattr(out, name)})
        step.logits.sum().backward()  # grad enabled: the original forward ran, gradients flow
        assert calls == []
        with torch.inference_mode():
            model.hf(input_ids=torch.tensor([[8]]), **{name: getattr(out, name)})
        assert calls  # the same one-token step without autograd takes the direct path


def test_direct_decode_is_on_by_default_and_the_environment_turns_it_off(monkeypatch):
    monkeypatch.delenv("STEERLAB_DIRECT_DECODE", raising=False)
    assert EngineOptions().direct_decode is True
    monkeypatch.setenv("STEERLAB_DIRECT_DECODE", "0")
    assert EngineOptions().direct_decode is False
    assert EngineOptions(direct_decode=True).direct_decode is True
    assert EngineOptions.fastest().direct_decode is True
