"""Shared-prefix prefill equals the plain batched prefill: same tokens, same log-probs, for every kind of intervention."""

import pytest
import torch

import steerlab
from steerlab import AblateLatents, AddVector, MaskUnits, Record, Sae, SaeConfig, Span
from steerlab.engine import prefix as shared_prefix
from steerlab.engine.options import EngineOptions

REAL_PREFILL = shared_prefix.prefill
# Raw prompts with a common start (the tiny chat template's shared header is only 2 tokens).
PROMPTS = [
    "Please answer: " + p
    for p in ["hello there, how are you", "hi", "tell me about the sea and its waves", "tell me a story"]
]


def test_common_prefix_leaves_every_row_a_token_of_its_own():
    assert shared_prefix.common_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 9]]) == 2
    assert shared_prefix.common_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_prefix.common_prefix([[1, 2, 3]]) == 0
    assert shared_prefix.common_prefix([[5, 2], [1, 2]]) == 0


def _interventions(model, case):
    d, b = model.arch.d_model, len(PROMPTS)
    gen = torch.Generator().manual_seed(3)
    sae = Sae.random(SaeConfig(d_in=d, d_sae=32, activation="relu", layer=1, site="resid_post"), seed=0)
    head_mask = torch.ones(b, model.arch.n_heads)
    head_mask[::2, 1] = 0.0
    return {
        "none": [],
        "add_alike": [AddVector(1, torch.randn(d, generator=gen), 4.0)],
        "add_generated_only": [AddVector(1, torch.randn(d, generator=gen), 4.0, positions="generated")],
        "add_per_row": [AddVector(1, torch.randn(b, d, generator=gen), 4.0)],
        "per_row_resid_pre_layer0": [AddVector(0, torch.randn(b, d, generator=gen), 4.0, site="resid_pre")],
        "prompt_end_span": [
            AddVector(1, torch.randn(d, generator=gen), 4.0, positions=Span(-3, 0, anchor="prompt_end"))
        ],
        "head_mask_alike": [MaskUnits(2, "head", head_mask[0])],
        "head_mask_per_row": [MaskUnits(2, "head", head_mask)],
        "ablate": [AblateLatents(sae, list(range(16)))],
    }[case]


# Layers shared per case (None: nothing shared). Alike rows (no per-row field) share the whole prefix,
# with the hooks run once on it; per-row edits share only the layers below the first hooked one.
SHARED = {
    "none": 3,
    "add_alike": 3,
    "add_generated_only": 3,
    "add_per_row": 1,
    "per_row_resid_pre_layer0": None,
    "prompt_end_span": 1,
    "head_mask_alike": 3,
    "head_mask_per_row": 2,
    "ablate": 3,
}


def _run(model, ivs, monkeypatch, share, preallocate=True, **kw):
    speed = EngineOptions(share_prefix=share, preallocate=preallocate)
    calls = []
    monkeypatch.setattr(shared_prefix, "prefill", lambda *a, **k: calls.append(a[-1]) or REAL_PREFILL(*a, **k))
    gens = steerlab.generate(
        model,
        PROMPTS,
        ivs,
        max_new_tokens=10,
        return_logprobs=True,
        ignore_eos=True,
        chat=False,
        engine_options=speed,
        **kw,
    )
    return gens, calls


@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral"])
@pytest.mark.parametrize("case", list(SHARED))
def test_shared_prefix_equals_plain_prefill(tiny_factory, monkeypatch, family, case):
    model = tiny_factory(family)
    ivs = _interventions(model, case)
    plain, plain_calls = _run(model, ivs, monkeypatch, share=False)
    shared, calls = _run(model, ivs, monkeypatch, share=True)
    assert plain_calls == []
    assert calls == ([] if SHARED[case] is None else [SHARED[case]])
    for a, b in zip(plain, shared):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-4)


def test_sampled_rows_and_rows_alone_agree_with_sharing(tiny_factory, monkeypatch):
    model = tiny_factory("llama")
    ivs = _interventions(model, "add_per_row")
    plain, _ = _run(model, ivs, monkeypatch, share=False, temperature=0.8, seed=[5, 6, 7, 8])
    shared, calls = _run(model, ivs, monkeypatch, share=True, temperature=0.8, seed=[5, 6, 7, 8])
    assert calls and [g.token_ids for g in plain] == [g.token_ids for g in shared]


def test_records_and_sliding_window_caches_keep_the_plain_prefill(tiny_factory, monkeypatch):
    model = tiny_factory("llama")
    ivs = [AddVector(1, torch.randn(model.arch.d_model), 2.0), Record(2, positions="all", name="r")]
    plain, _ = _run(model, ivs, monkeypatch, share=False)
    shared, calls = _run(model, ivs, monkeypatch, share=True)
    assert calls == []  # a record needs each row's own forward over its whole prompt
    for a, b in zip(plain, shared):
        torch.testing.assert_close(a.records["r"], b.records["r"])
    _, calls = _run(tiny_factory("gemma3"), [], monkeypatch, share=True)
    assert calls == []


def test_shared_prefix_with_the_growing_cache(tiny_factory, monkeypatch):
    """The prefix's keys and values also go into transformers' own (concatenating) cache layers correctly."""
    model = tiny_factory("llama")
    ivs = _interventions(model, "add_per_row")
    plain, _ = _run(model, ivs, monkeypatch, share=False, preallocate=False)
    shared, calls = _run(model, ivs, monkeypatch, share=True, preallocate=False)
    assert calls == [1]
    for a, b in zip(plain, shared):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-4)
