"""Model diffing on tiny random models: a planted latent shift ranks first, identical models give zero change."""

from __future__ import annotations

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.persona import diff_models
from steerlab.persona.diff import response_activations
from steerlab.sae import Sae, SaeConfig
from steerlab.testing import tiny_model

PROMPTS = ["hello there", "what is up?", "tell me a story"]
LAYER, PLANTED = 1, 7


@pytest.fixture(scope="module")
def base():
    return tiny_model("llama", seed=0)


@pytest.fixture(scope="module")
def sae():
    return Sae.random(SaeConfig(d_in=64, d_sae=128, layer=LAYER), seed=0)


def _add_at_layer(model, vector: torch.Tensor, prompt_len: int | None = None):
    """A persistent hook adding `vector` to the layer's output (only at the first prompt_len positions when given)."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        delta = torch.zeros_like(hidden)
        if prompt_len is None:
            delta[:] = vector
        else:
            delta[:, :prompt_len] = vector
        hidden = hidden + delta
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    return model.hf.model.layers[LAYER].register_forward_hook(hook)


@pytest.fixture(scope="module")
def planted(sae):
    """A 'tuned' copy of the base model whose layer-1 residual is shifted along the planted latent's decoder row."""
    tuned = tiny_model("llama", seed=0)
    _add_at_layer(tuned, 4.0 * sae.direction(PLANTED).detach())
    return tuned


def test_planted_latent_ranks_first(base, planted, sae):
    result = diff_models(base, planted, sae, PROMPTS, max_new_tokens=6)
    top = result.top(1)[0]
    assert top.latent == PLANTED and top.rank == 1 and top.delta_mean > 0
    assert result.rank_of(PLANTED) == 1
    assert top.delta_mean > 2 * result.latents[1].delta_mean  # clearly separated from the runner-up
    assert top.delta_freq == max(r.delta_freq for r in result.latents)
    by_effect = diff_models(base, planted, sae, PROMPTS, result.responses, rank_by="effect")
    assert by_effect.top(1)[0].latent == PLANTED
    # Swapping the models flips the sign: the planted latent becomes the largest decrease (#-1).
    swapped = diff_models(planted, base, sae, PROMPTS, result.responses)
    assert swapped.bottom(1)[0].latent == PLANTED
    forward = {r.latent: r.delta_mean for r in by_effect.latents}
    assert all(r.delta_mean == pytest.approx(-forward[r.latent], abs=1e-9) for r in swapped.latents)
    # Re-scoring the exact token ids reproduces the first run bit for bit.
    again = diff_models(base, planted, sae, PROMPTS, result.response_ids)
    assert [(r.latent, r.delta_mean) for r in again.latents] == [(r.latent, r.delta_mean) for r in result.latents]
    with pytest.raises(SteerlabError, match="outside the tokenizer"):
        diff_models(base, planted, sae, PROMPTS[:1], [[10**6]])


def test_identical_models_give_zero_change(base, sae):
    result = diff_models(base, base, sae, PROMPTS, max_new_tokens=6)
    assert all(r.delta_mean == 0 and r.delta_freq == 0 and r.effect_size == 0 for r in result.latents)
    assert result.fvu_base == result.fvu_tuned
    assert [r.latent for r in result.latents] == list(range(sae.d_sae))  # ties broken by latent id
    assert result.n_tokens > 0 and result.n_prompts == len(PROMPTS)


def test_only_response_tokens_count(base, sae):
    """A shift planted only at prompt positions (after the SAE layer reads) leaves every response statistic unchanged."""
    prompt = PROMPTS[0]
    tuned = tiny_model("llama", seed=0)
    _add_at_layer(tuned, 4.0 * sae.direction(PLANTED).detach(), prompt_len=len(base.encode(prompt)))
    result = diff_models(base, tuned, sae, [prompt], ["some fixed answer"], batch_size=1)
    assert max(abs(r.delta_mean) for r in result.latents) == 0.0
    assert result.n_tokens == len(base.tokenizer("some fixed answer", add_special_tokens=False)["input_ids"])


def test_fvu_matches_direct_computation(base, planted, sae):
    responses = ["a fixed reply", "another one here"]
    result = diff_models(base, planted, sae, PROMPTS[:2], responses)
    prompt_ids = [base.encode(p) for p in PROMPTS[:2]]
    resp_ids = [base.tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses]
    for model, fvu in ((base, result.fvu_base), (planted, result.fvu_tuned)):
        x = torch.cat(response_activations(model, prompt_ids, resp_ids, LAYER, "resid_post")).double()
        with torch.no_grad():
            err = ((x - sae(x.float()).double()) ** 2).sum()
        assert fvu == pytest.approx(float(err / ((x - x.mean(0)) ** 2).sum()), rel=1e-5)
    assert result.median_norm_tuned > result.median_norm_base


def test_outputs_round_trip(base, planted, sae, tmp_path):
    import csv
    import json

    from steerlab.persona.report import write_diff

    result = diff_models(base, planted, sae, PROMPTS, max_new_tokens=4)
    paths = write_diff(result, tmp_path, top=5)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == sae.d_sae and int(rows[0]["latent"]) == PLANTED
    data = json.loads(paths["json"].read_text())
    assert data["latents"][0]["latent"] == PLANTED and data["fvu_tuned"] == result.fvu_tuned
    page = paths["html"].read_text()
    assert "Persona diff" in page and "FVU" in page and "data:image/png;base64" in page


def test_bad_input_one_sentence(base, sae):
    with pytest.raises(SteerlabError, match="width 32"):
        diff_models(base, base, Sae.random(SaeConfig(d_in=32, d_sae=64, layer=LAYER)), PROMPTS)
    with pytest.raises(SteerlabError, match="out of range"):
        diff_models(base, base, Sae.random(SaeConfig(d_in=64, d_sae=64, layer=9)), PROMPTS)
    with pytest.raises(SteerlabError, match="qwen2"):
        diff_models(base, tiny_model("qwen2", seed=0), sae, PROMPTS)
    other_vocab = tiny_model("llama", seed=0)
    other_vocab.tokenizer.add_tokens(["<extra>"])
    with pytest.raises(SteerlabError, match="different tokenizers"):
        diff_models(base, other_vocab, sae, PROMPTS)
    for empty in ([], ["   "]):
        with pytest.raises(SteerlabError, match="empty"):
            diff_models(base, base, sae, empty)
    with pytest.raises(SteerlabError, match="one response per prompt"):
        diff_models(base, base, sae, PROMPTS, ["only one"])
    with pytest.raises(SteerlabError, match="Unknown ranking"):
        diff_models(base, base, sae, PROMPTS, rank_by="median")


def test_activations_of_several_layers_equal_each_layer_read_alone(base):
    from steerlab.persona.diff import response_activations_by_layer

    prompt_ids = [base.encode(p) for p in PROMPTS]
    response_ids = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    seen = []
    both = response_activations_by_layer(base, prompt_ids, response_ids, [0, 2], "resid_post", 2, seen.append)
    assert seen == [2, 1]  # one call per batch, with its row count
    for layer in (0, 2):
        alone = response_activations(base, prompt_ids, response_ids, layer, "resid_post", 2)
        assert [x.shape[0] for x in alone] == [3, 2, 4]
        for a, b in zip(alone, both[layer]):
            torch.testing.assert_close(a, b)
