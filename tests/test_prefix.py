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


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize(
    "delta_rows, mask_rows, groups",
    [
        ([0, 1, 0, 1], None, 2),  # two configs, interleaved
        ([1, 1, 1, 1], None, 1),  # one config given per row
        ([0, 0, 1, 1], [0, 0, 1, 1], 2),  # two fields that agree on the grouping
        ([0, 0, 1, 1], [0, 1, 0, 1], 4),  # two fields that split every group: no sharing
    ],
)
def test_rows_with_equal_edits_run_the_hooked_prefix_once_per_group(
    tiny_factory, monkeypatch, family, delta_rows, mask_rows, groups
):
    """The hooked layers' prefix pass runs once per group of rows with equal edits; tokens and log-probs still
    equal the plain prefill's."""
    model = tiny_factory(family)
    gen = torch.Generator().manual_seed(11)
    vectors = torch.randn(2, model.arch.d_model, generator=gen)
    ivs = [AddVector(1, vectors[delta_rows], 4.0)]
    if mask_rows is not None:
        masks = torch.ones(2, model.arch.n_heads)
        masks[1, 0] = 0.0
        ivs.append(MaskUnits(2, "head", masks[mask_rows]))
    passes = []
    real = shared_prefix._hooked_prefix
    monkeypatch.setattr(shared_prefix, "_hooked_prefix", lambda *a: passes.append(a[4].shape[0]) or real(*a))
    plain, _ = _run(model, ivs, monkeypatch, share=False)
    shared, calls = _run(model, ivs, monkeypatch, share=True)
    assert calls == [1] and passes == [groups if groups < len(PROMPTS) else len(PROMPTS)]
    for a, b in zip(plain, shared):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-4)


def test_row_groups_find_rows_with_equal_edits_and_only_rows_restores(tiny_factory):
    from steerlab.interventions.hooks import Session

    model = tiny_factory("llama")
    d = model.arch.d_model
    a, b, c = torch.randn(3, d)
    session = Session(model, [AddVector(1, torch.stack([b, a, b, c, a]), 2.0)])
    first, group = session.row_groups()
    assert len(first) == 3 and (group[first] == torch.arange(3)).all()  # each group's row stands for it
    assert group[0] == group[2] and group[1] == group[4] and len({int(g) for g in group[[0, 1, 3]]}) == 3
    session.set_step(torch.zeros(5, 3, dtype=torch.long), torch.full((5,), 3))
    before = next(iter(session.sites.values())).adds
    with session.only_rows(first):
        ((_, delta),) = next(iter(session.sites.values())).adds.values()
        assert delta.shape[0] == 3
    assert next(iter(session.sites.values())).adds is before
    assert Session(model, [AddVector(1, a, 2.0)]).row_groups() is None  # no per-row field: every row alike
    spans = [AddVector(1, torch.stack([a, a]), 2.0, positions=Span(-2, 0, anchor="prompt_end"))]
    assert Session(model, spans).row_groups() is None  # edits follow each row's own prompt end
