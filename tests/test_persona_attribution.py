"""Attribution ranking on tiny models: the latent gradients match finite differences, identical models score zero,
and the attribution column and ranking come out of diff_models."""

from __future__ import annotations

import pytest
import torch

from steerlab.persona import diff_models
from steerlab.persona.attribution import attribution_scores, latent_gradients
from steerlab.persona.contexts import top_contexts
from steerlab.sae import Sae, SaeConfig
from steerlab.testing import tiny_model

LAYER = 1


@pytest.fixture(scope="module")
def model64():
    """A private fp64 tiny model (finite differences need the precision)."""
    m = tiny_model("llama", seed=0)
    m.hf.double()
    return m


@pytest.fixture(scope="module")
def sae64():
    return Sae.random(SaeConfig(d_in=64, d_sae=96, layer=LAYER), seed=0).double()


def _answer_logp(model, prompt_ids, answer_ids, push: torch.Tensor | None = None) -> float:
    """sum log p(answer) with `push` added to the layer's output at the answer positions (one row, no padding)."""
    ids = torch.tensor([prompt_ids + answer_ids])
    n = len(answer_ids)

    def hook(mod, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        h[:, -n:] += push
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    handle = model.hf.model.layers[LAYER].register_forward_hook(hook) if push is not None else None
    try:
        with torch.no_grad():
            logp = torch.log_softmax(model.hf(input_ids=ids).logits[0, :-1].double(), -1)
    finally:
        if handle is not None:
            handle.remove()
    targets = ids[0, 1:]
    return float(logp[-n:].gather(-1, targets[-n:, None]).sum())


def test_latent_gradient_matches_finite_difference(model64, sae64):
    prompt = model64.encode("tell me a story")
    answer = model64.tokenizer("once upon a time", add_special_tokens=False)["input_ids"]
    zs, gs = latent_gradients(model64, sae64, [prompt], [answer])
    assert zs[0].shape == gs[0].shape == (len(answer), sae64.d_sae)
    eps = 1e-2  # the tiny model keeps some float32 internals, so smaller steps only add rounding noise
    for latent in (0, 5, 42):
        d = sae64.direction(latent).detach()
        fd = (_answer_logp(model64, prompt, answer, eps * d) - _answer_logp(model64, prompt, answer, -eps * d)) / (
            2 * eps
        )
        assert float(gs[0][:, latent].sum()) == pytest.approx(fd, rel=2e-3, abs=1e-5)
    # The rewrite preserves the forward value: the log-prob with the hook equals the plain one.
    assert _answer_logp(model64, prompt, answer) == pytest.approx(
        _answer_logp(model64, prompt, answer, torch.zeros(64, dtype=torch.float64))
    )


def test_identical_models_attribute_zero(model64, sae64):
    prompts = [model64.encode(p) for p in ("hi", "what is up?")]
    answers = [model64.tokenizer(a, add_special_tokens=False)["input_ids"] for a in ("hello friend", "not much")]
    scores = attribution_scores(model64, model64, sae64, prompts, answers)
    assert scores.shape == (96,) and float(scores.abs().max()) < 1e-8  # z_base and z_tuned come from different kernels


def test_attribution_ranking_and_batch_independence(sae64):
    base = tiny_model("llama", seed=0)
    tuned = tiny_model("llama", seed=0)
    sae = Sae.random(SaeConfig(d_in=64, d_sae=96, layer=LAYER), seed=0)
    with torch.no_grad():
        w = tuned.hf.model.layers[0].mlp.down_proj.weight
        w.add_(0.3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(2)))
    prompts = ["hello there", "what is up?", "tell me a story"]
    result = diff_models(base, tuned, sae, prompts, rank_by="attribution", max_new_tokens=5)
    attrs = [r.attribution for r in result.latents]
    assert all(a is not None for a in attrs) and attrs == sorted(attrs, reverse=True) and attrs[0] > 0
    assert len(result.tuned_response_ids) == 3 and result.rank_by == "attribution"
    # Scores do not depend on how rows are batched (left padding is handled).
    p_ids = [base.encode(p) for p in prompts]
    one = attribution_scores(base, tuned, sae, p_ids, result.tuned_response_ids, batch_size=1)
    three = attribution_scores(base, tuned, sae, p_ids, result.tuned_response_ids, batch_size=3)
    assert torch.allclose(one, three, atol=1e-5, rtol=1e-4)
    by_mean = diff_models(base, tuned, sae, prompts, result.response_ids)
    assert all(r.attribution is None for r in by_mean.latents)


def test_top_contexts_find_the_peak_token():
    base = tiny_model("llama", seed=0)
    sae = Sae.random(SaeConfig(d_in=64, d_sae=96, layer=LAYER), seed=0)
    prompts = [base.encode(p) for p in ("hello there", "tell me a story")]
    answers = [
        base.tokenizer(a, add_special_tokens=False)["input_ids"] for a in ("a fine day today", "once upon a time")
    ]
    from steerlab.persona.diff import response_activations

    acts = [sae.encode(x) for x in response_activations(base, prompts, answers, LAYER, "resid_post")]
    latent = int(torch.cat(acts).max(0).values.argmax())
    found = top_contexts(base, sae, prompts, answers, [latent], k=3)[latent]
    assert 1 <= len(found) <= 3 and found == sorted(found, key=lambda c: -c.activation)
    best = found[0]
    assert best.activation == pytest.approx(float(torch.cat(acts)[:, latent].max().detach()), rel=1e-5)
    pos = int(acts[best.row][:, latent].detach().argmax())
    assert best.token == base.tokenizer.decode(answers[best.row][pos : pos + 1]) and "[[" in best.text()
