"""The oracle tests: every steering, ablation and masking path against the plain fp32 model."""

import pytest
import torch
from tests.helpers import full_recompute_logits

import steerlab
from steerlab import AblateLatents, AddVector, ClampLatents, MaskUnits, Record, Sae, SaeConfig, SteerLatent

FAMILIES = ["llama", "gemma3", "gpt2", "gemma2", "qwen3", "mistral", "qwen2"]
PROMPTS = ["hello there, how are you", "hi", "tell me about the sea and its waves"]


def ids_of(gens):
    return [g.token_ids for g in gens]


@pytest.mark.parametrize("family", FAMILIES)
def test_strength_zero_equals_no_intervention(tiny_factory, family):
    model = tiny_factory(family)
    vector = torch.randn(model.arch.d_model)
    plain = steerlab.generate(model, PROMPTS, max_new_tokens=12)
    zero = steerlab.generate(model, PROMPTS, [AddVector(1, vector, 0.0)], max_new_tokens=12)
    assert ids_of(plain) == ids_of(zero)
    steered = steerlab.generate(model, PROMPTS, [AddVector(1, vector, 8.0)], max_new_tokens=12)
    assert ids_of(steered) != ids_of(plain)  # the hook really acts


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("positions", ["all", "generated", "prompt"])
def test_cached_generation_equals_full_recompute(tiny_factory, family, positions):
    model = tiny_factory(family)
    torch.manual_seed(1)
    ivs = [AddVector(1, torch.randn(model.arch.d_model), 3.0, positions=positions)]
    gen = steerlab.generate(model, ["tell me about the sea"], ivs, max_new_tokens=10)[0]
    prompt_ids = gen.prompt_ids
    logits = full_recompute_logits(model, prompt_ids, gen.token_ids, ivs)
    # The token generated at step t is the argmax of the logits at position len(prompt)-1+t.
    predicted = logits[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(gen.token_ids)].argmax(-1).tolist()
    assert predicted == gen.token_ids


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_cached_logprobs_and_records_match_recompute_numerically(tiny_factory, family):
    model = tiny_factory(family)
    torch.manual_seed(2)
    vec = torch.randn(model.arch.d_model)
    ivs = [AddVector(2, vec, 2.0, positions="generated")]
    gen = steerlab.generate(
        model,
        ["waves"],
        ivs + [Record(2, positions="generated", name="r")],
        max_new_tokens=8,
        return_logprobs=True,
        ignore_eos=True,
    )[0]
    logits = full_recompute_logits(model, gen.prompt_ids, gen.token_ids, ivs)
    n = len(gen.prompt_ids)
    full = torch.log_softmax(logits[n - 1 : n - 1 + len(gen.token_ids)], -1)
    expected = full.gather(-1, torch.tensor(gen.token_ids).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(gen.logprobs, expected, rtol=1e-4, atol=1e-4)
    # Residuals recorded in the cached loop equal those of the uncached forward at the same positions.
    from tests.helpers import full_recompute_records

    reference = full_recompute_records(model, gen.prompt_ids, gen.token_ids, ivs, layer=2)
    torch.testing.assert_close(gen.records["r"], reference[n : n + len(gen.token_ids) - 1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_batch_equals_rows_alone_with_per_row_interventions(tiny_factory, family):
    model = tiny_factory(family)
    torch.manual_seed(3)
    d = model.arch.d_model
    per_row = [
        [AddVector(0, torch.randn(d), 4.0)],
        [],
        [
            AddVector(2, torch.randn(d), -3.0, positions="generated"),
            MaskUnits(1, "head", torch.tensor([1.0, 0.0, 1.0, 1.0])),
        ],
    ]
    batched = steerlab.generate(model, PROMPTS, per_row, max_new_tokens=10)
    alone = [steerlab.generate(model, [p], ivs, max_new_tokens=10)[0] for p, ivs in zip(PROMPTS, per_row)]
    assert ids_of(batched) == ids_of(alone)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_strength_tensor_equals_rows(tiny_factory, family):
    model = tiny_factory(family)
    torch.manual_seed(4)
    d = model.arch.d_model
    vectors = torch.randn(3, d)
    strengths = torch.tensor([0.0, 2.0, 5.0])
    batched = steerlab.generate(model, PROMPTS, [AddVector(1, vectors, strengths)], max_new_tokens=8, batch_size=2)
    alone = [
        steerlab.generate(model, [p], [AddVector(1, vectors[i], float(strengths[i]))], max_new_tokens=8)[0]
        for i, p in enumerate(PROMPTS)
    ]
    assert ids_of(batched) == ids_of(alone)


def _sae_with_dead_latents(model, layer=1):
    cfg = SaeConfig(d_in=model.arch.d_model, d_sae=32, activation="relu", layer=layer, site="resid_post")
    sae = Sae.random(cfg, seed=0)
    with torch.no_grad():
        sae.b_enc[:8] = -1e6  # latents 0-7 can never fire
    return sae


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_ablating_silent_latents_changes_nothing(tiny_factory, family):
    model = tiny_factory(family)
    sae = _sae_with_dead_latents(model)
    plain = steerlab.generate(model, PROMPTS, max_new_tokens=10)
    ablated = steerlab.generate(model, PROMPTS, [AblateLatents(sae, [0, 3, 7])], max_new_tokens=10)
    assert ids_of(plain) == ids_of(ablated)
    records = steerlab.trace(model, PROMPTS, [Record(1, "resid_post", positions="all", name="x")])
    with_ablation = steerlab.trace(
        model, PROMPTS, [AblateLatents(sae, [0, 3, 7]), Record(1, "resid_post", positions="all", name="x")]
    )
    for a, b in zip(records, with_ablation):
        torch.testing.assert_close(a["x"], b["x"], rtol=0, atol=0)


def test_clamp_matches_reference_formula(tiny_factory):
    model = tiny_factory("llama")
    sae = _sae_with_dead_latents(model)
    latents = [10, 11, 20]
    base = steerlab.trace(model, PROMPTS[:1], [Record(1, "resid_post", positions="all", name="x")])[0]["x"]
    clamped = steerlab.trace(
        model, PROMPTS[:1], [ClampLatents(sae, latents, 5.0), Record(1, "resid_post", positions="all", name="x")]
    )[0]["x"]
    z = sae.encode(base)[:, latents]
    expected = base + (5.0 - z) @ sae.W_dec[latents].detach()
    torch.testing.assert_close(clamped, expected, rtol=1e-5, atol=1e-5)


def test_steer_latent_equals_add_vector_of_its_decoder_row(tiny_factory):
    model = tiny_factory("llama")
    sae = _sae_with_dead_latents(model)
    a = steerlab.generate(model, PROMPTS, [SteerLatent(sae, 12, 6.0)], max_new_tokens=8)
    b = steerlab.generate(model, PROMPTS, [AddVector(1, sae.W_dec[12].detach(), 6.0)], max_new_tokens=8)
    assert ids_of(a) == ids_of(b)
    per_row = steerlab.generate(
        model, PROMPTS, [SteerLatent(sae, torch.tensor([12, 12, 12]), torch.tensor([6.0, 6.0, 6.0]))], max_new_tokens=8
    )
    assert ids_of(per_row) == ids_of(a)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2", "qwen2"])
def test_head_mask_of_ones_is_identity_and_masking_equals_zeroing_o_proj_slice(tiny_factory, family):
    model = tiny_factory(family)
    arch = model.arch
    plain = steerlab.trace(model, PROMPTS, [Record(2, "resid_post", positions="all", name="x")])
    ones = steerlab.trace(
        model,
        PROMPTS,
        [MaskUnits(1, "head", torch.ones(arch.n_heads)), Record(2, "resid_post", positions="all", name="x")],
    )
    for a, b in zip(plain, ones):
        torch.testing.assert_close(a["x"], b["x"], rtol=0, atol=0)
    head = 2
    mask = torch.ones(arch.n_heads)
    mask[head] = 0
    masked = steerlab.trace(
        model, PROMPTS, [MaskUnits(1, "head", mask), Record(2, "resid_post", positions="all", name="x")]
    )

    def zero_slice(module, args):
        x = args[0].clone()
        x[..., head * arch.head_dim : (head + 1) * arch.head_dim] = 0
        return (x,)

    handle = arch.o_proj(1).register_forward_pre_hook(zero_slice)
    try:
        reference = steerlab.trace(model, PROMPTS, [Record(2, "resid_post", positions="all", name="x")])
    finally:
        handle.remove()
    for a, b in zip(masked, reference):
        torch.testing.assert_close(a["x"], b["x"], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(masked[0]["x"], plain[0]["x"])


def test_neuron_mask_equals_zeroing_down_proj_input(tiny_factory):
    model = tiny_factory("llama")
    arch = model.arch
    mask = torch.ones(arch.d_mlp)
    mask[[3, 50]] = 0
    masked = steerlab.trace(
        model, PROMPTS[:2], [MaskUnits(0, "neuron", mask), Record(1, "resid_post", positions="all", name="x")]
    )

    def zero(module, args):
        x = args[0].clone()
        x[..., [3, 50]] = 0
        return (x,)

    handle = arch.down_proj(0).register_forward_pre_hook(zero)
    try:
        reference = steerlab.trace(model, PROMPTS[:2], [Record(1, "resid_post", positions="all", name="x")])
    finally:
        handle.remove()
    for a, b in zip(masked, reference):
        torch.testing.assert_close(a["x"], b["x"])


def test_differentiable_mask_gets_gradients(tiny_factory):
    model = tiny_factory("llama")
    logits_mask = torch.zeros(model.arch.n_heads, requires_grad=True)
    scores = steerlab.score(
        model, ["hello"], [" world"], [MaskUnits(1, "head", torch.sigmoid(logits_mask + 2))], grad=True
    )
    scores[0].logprobs.sum().backward()
    assert logits_mask.grad is not None and logits_mask.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_sampling_row_is_independent_of_its_batch(tiny_factory, family):
    model = tiny_factory(family)
    kwargs = dict(max_new_tokens=12, temperature=1.0, top_p=0.9, top_k=50, repetition_penalty=1.2)
    batched = steerlab.generate(model, PROMPTS, seed=[7, 8, 9], **kwargs)
    alone = [steerlab.generate(model, [p], seed=[s], **kwargs)[0] for p, s in zip(PROMPTS, [7, 8, 9])]
    assert ids_of(batched) == ids_of(alone)
    other_seed = steerlab.generate(model, PROMPTS, seed=[1, 2, 3], **kwargs)
    assert ids_of(other_seed) != ids_of(batched)


def test_recorded_residuals_equal_hf_hidden_states():
    from steerlab.testing import tiny_model

    # A private model: output_hidden_states makes transformers leave capture hooks on the layers,
    # which must not leak into the session-wide tiny models other tests inspect.
    model = tiny_model("llama")
    rec = steerlab.trace(
        model,
        ["hello"],
        [Record(1, "resid_post", positions="all", name="post"), Record(1, "resid_pre", positions="all", name="pre")],
    )[0]
    ids = torch.tensor([model.encode("hello", chat=False)])
    with torch.no_grad():
        hidden = model.hf(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(rec["post"], hidden[2][0])
    torch.testing.assert_close(rec["pre"], hidden[1][0])


def test_generated_records_have_one_row_per_fed_token(tiny_factory):
    model = tiny_factory("llama")
    gens = steerlab.generate(
        model,
        PROMPTS,
        [Record(1, positions="generated", name="g"), Record(1, positions="prompt", name="p")],
        max_new_tokens=5,
    )
    for g in gens:
        assert g.records["p"].shape == (len(g.prompt_ids), model.arch.d_model)
        assert g.records["g"].shape[0] == len(g.token_ids) - 1  # the last token is never fed back


def test_stop_strings_and_finish_reasons(tiny_factory):
    model = tiny_factory("llama")
    free = steerlab.generate(model, PROMPTS, max_new_tokens=12, ignore_eos=True)
    text = free[0].text
    stop = text[3:5]
    cut = steerlab.generate(model, PROMPTS[:1], max_new_tokens=12, stop=[stop], ignore_eos=True)[0]
    assert cut.finish_reason == "stop" and stop not in cut.text and text.startswith(cut.text)
    assert all(g.finish_reason == "length" and len(g.token_ids) == 12 for g in free)


def test_eos_ends_a_row_and_is_not_kept(tiny_factory):
    model = tiny_factory("llama")
    free = steerlab.generate(model, PROMPTS[:1], max_new_tokens=6, ignore_eos=True)[0]
    eos_token = free.token_ids[2]
    saved = model.stop_token_ids
    model.stop_token_ids = (eos_token,)
    try:
        gen = steerlab.generate(model, PROMPTS[:1], max_new_tokens=6)[0]
    finally:
        model.stop_token_ids = saved
    first = free.token_ids.index(eos_token)
    assert gen.finish_reason == "eos" and gen.token_ids == free.token_ids[:first]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_rows_finishing_at_different_steps_equal_rows_alone(tiny_factory, family):
    """Finished rows leave the batch (cache, steering, records are compacted); results must not change."""
    model = tiny_factory(family)
    torch.manual_seed(5)
    d = model.arch.d_model
    prompts = PROMPTS + ["a fourth prompt, longer than the others by a few words"]
    per_row = [
        [AddVector(1, torch.randn(d), 3.0)],
        [],
        [AddVector(1, torch.randn(d), -2.0)],
        [MaskUnits(0, "head", torch.tensor([0.0, 1.0, 1.0, 1.0]))],
    ]
    record = Record(1, positions="generated", name="g")
    free = steerlab.generate(model, prompts, [ivs + [record] for ivs in per_row], max_new_tokens=12, ignore_eos=True)
    # Pick a stop token that ends rows at different steps (and leaves at least one row running to the end).
    counts = {}
    for g in free:
        for t in set(g.token_ids[1:10]):
            counts[t] = counts.get(t, 0) + 1
    stop_token = next((t for t, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c < len(prompts)), None)
    assert stop_token is not None
    saved = model.stop_token_ids
    model.stop_token_ids = (stop_token,)
    try:
        batched = steerlab.generate(
            model, prompts, [ivs + [record] for ivs in per_row], max_new_tokens=12, return_logprobs=True
        )
        alone = [
            steerlab.generate(model, [p], [ivs + [record]], max_new_tokens=12, return_logprobs=True)[0]
            for p, ivs in zip(prompts, per_row)
        ]
    finally:
        model.stop_token_ids = saved
    assert len({len(g.token_ids) for g in batched}) > 1  # rows really finished at different steps
    for b, a in zip(batched, alone):
        assert b.token_ids == a.token_ids and b.finish_reason == a.finish_reason
        torch.testing.assert_close(b.logprobs, a.logprobs, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(b.records["g"], a.records["g"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_forced_forward_equals_each_row_alone_and_keeps_the_last_logits(tiny_factory, family):
    """The one teacher-forced forward: left padding changes nothing, `logits=k` is the last k of all logits."""
    from steerlab.engine.scoring import ForcedBatch, forced_forward

    model = tiny_factory(family)
    rows = [model.encode(p, chat=False) for p in PROMPTS]
    record = Record(1, "resid_post", positions="generated", name="x")
    lengths = [len(r) - 2 for r in rows]
    with torch.no_grad():
        batch = ForcedBatch.of(model, rows, lengths)
        full, records = forced_forward(model, batch, [record])
        last3, _ = forced_forward(model, batch, logits=3)
        torch.testing.assert_close(last3, full[:, -3:])
        for i, row in enumerate(rows):
            alone, rec_alone = forced_forward(model, ForcedBatch.of(model, [row], [lengths[i]]), [record])
            torch.testing.assert_close(full[i, -len(row) :], alone[0], atol=1e-4, rtol=1e-4)
            assert records["x"][i].shape[0] == 2  # only the "generated" tail, never padding
            torch.testing.assert_close(records["x"][i], rec_alone["x"][0], atol=1e-4, rtol=1e-4)
