"""The Sae module's conventions and the hook-point mapping (TL/SAELens names, HF hidden_states)."""

from __future__ import annotations

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.sae import Sae, SaeConfig, from_hidden_states_index, hidden_states_index, hook_name, parse_hook_name
from steerlab.sae.harvest import SiteCapture
from steerlab.testing import tiny_model

D, F = 12, 40


def _sae(activation="relu", **kw):
    cfg = SaeConfig(
        d_in=D, d_sae=F, activation=activation, k=kw.pop("k", 4 if activation in ("topk", "batchtopk") else None), **kw
    )
    sae = Sae.random(cfg, seed=1)
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-0.3, 0.3, F))
        sae.b_dec.copy_(torch.linspace(-1, 1, D))
        sae.threshold.copy_(torch.linspace(0.0, 0.8, F))
    return sae


@pytest.mark.parametrize(
    "name,expected",
    [
        ("blocks.12.hook_resid_post", (12, "resid_post")),
        ("blocks.0.hook_resid_pre", (0, "resid_pre")),
        ("blocks.3.hook_attn_out", (3, "attn_out")),
        ("blocks.3.hook_mlp_out", (3, "mlp_out")),
        ("blocks.5.attn.hook_z", (5, "head")),
        ("blocks.5.mlp.hook_post", (5, "neuron")),
        ("layers.7", (7, "resid_post")),
        ("model.layers.19", (19, "resid_post")),
        ("layers.2.mlp", (2, "mlp_out")),
        ("resid_post_layer_4", (4, "resid_post")),
    ],
)
def test_parse_hook_name(name, expected):
    assert parse_hook_name(name) == expected


def test_hook_name_round_trip():
    for site in ("resid_pre", "resid_post", "attn_out", "mlp_out", "head", "neuron"):
        assert parse_hook_name(hook_name(4, site)) == (4, site)
    with pytest.raises(SteerlabError, match="not one steerlab can read"):
        parse_hook_name("blocks.1.hook_resid_mid")
    with pytest.raises(SteerlabError, match="Unknown hook point"):
        parse_hook_name("encoder.3")


def test_hidden_states_mapping_matches_the_model():
    """TL resid_post[L] is HF hidden_states[L+1]; resid_pre[L] is hidden_states[L]; the last index is after the final norm."""
    model = tiny_model("llama")
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    with torch.no_grad():
        hs = model.hf(input_ids=ids, output_hidden_states=True).hidden_states
    n = model.arch.n_layers
    for layer in range(n):
        for site in ("resid_pre", "resid_post"):
            with SiteCapture(model, layer, site, stop=True) as cap:
                got = cap.run(ids, torch.ones_like(ids))
            idx = hidden_states_index(layer, site)
            if idx < n:  # hidden_states[n] has the final norm applied
                torch.testing.assert_close(got, hs[idx])
                assert from_hidden_states_index(idx, n) == (
                    (layer, site) if site == "resid_post" or layer == 0 else (layer - 1, "resid_post")
                )
    with pytest.raises(SteerlabError, match="final-norm"):
        from_hidden_states_index(-1, n)


@pytest.mark.parametrize("activation", ["relu", "topk", "batchtopk", "jumprelu"])
def test_encode_latents_equals_full_encode(activation):
    sae = _sae(activation)
    x = torch.randn(3, 5, D)
    idx = [0, 7, 39, 12]
    torch.testing.assert_close(sae.encode_latents(x, idx), sae.encode(x)[..., idx])


def test_activation_semantics():
    x = torch.randn(50, D) * 2
    topk = _sae("topk", k=3)
    assert int((topk.encode(x) > 0).sum(-1).max()) <= 3
    jr = _sae("jumprelu")
    z, pre = jr.encode(x), jr.pre_activations(x)
    assert torch.equal(z > 0, pre > torch.maximum(jr.threshold, torch.zeros(F)))
    bt = _sae("batchtopk", batchtopk_inference="threshold")
    assert torch.equal(bt.encode(x), jr.encode(x))  # a threshold BatchTopK is a JumpReLU at inference
    bt.cfg.batchtopk_inference = "topk"
    assert int((bt.encode(x) > 0).sum(-1).max()) <= 4


def test_normalisation_and_error_term():
    x = torch.randn(4, D) * 30
    plain = _sae("relu")
    scaled = _sae("relu", input_scale=0.25, normalization="expected_average_norm")
    # scaling the input by s and dividing the output by s: same latents as the plain SAE on x*s
    torch.testing.assert_close(scaled.encode(x), plain.encode(x * 0.25))
    torch.testing.assert_close(scaled(x), plain(x * 0.25) / 0.25)
    torch.testing.assert_close(scaled.error(x) + scaled(x), x)
    torch.testing.assert_close(scaled.direction(3), scaled.W_dec[3] / 0.25)
    dz = torch.randn(2, 3)
    z = scaled.encode(x[:2])
    z2 = z.clone()
    z2[:, [1, 5, 9]] += dz
    torch.testing.assert_close(
        scaled.decode(z2) - scaled.decode(z), scaled.decode_delta(dz, [1, 5, 9]), rtol=1e-4, atol=1e-4
    )


def test_bad_configs_are_one_sentence():
    with pytest.raises(SteerlabError, match="needs k"):
        SaeConfig(d_in=4, d_sae=8, activation="topk")
    with pytest.raises(SteerlabError, match="Unknown SAE activation"):
        SaeConfig(d_in=4, d_sae=8, activation="gelu")
    with pytest.raises(SteerlabError, match="input_scale=1.0"):
        SaeConfig(d_in=4, d_sae=8, input_scale=2.0)
    with pytest.raises(SteerlabError, match="out of range"):
        _sae().check_latent(F)


def test_width_layer_and_site_checks_against_a_model():
    model = tiny_model("llama")  # d_model 64, 3 layers
    wrong_width = Sae.random(SaeConfig(d_in=32, d_sae=64, layer=1), seed=0)
    with pytest.raises(SteerlabError, match="width 32.*width 64"):
        wrong_width.check_fits(model)
    wrong_layer = Sae.random(SaeConfig(d_in=64, d_sae=64, layer=7), seed=0)
    with pytest.raises(SteerlabError, match="Layer 7 is out of range"):
        wrong_layer.check_fits(model)
    wrong_site = Sae.random(SaeConfig(d_in=64, d_sae=64, layer=1, site="resid_mid"), seed=0)
    with pytest.raises(SteerlabError, match="Unknown site"):
        wrong_site.check_fits(model)
    Sae.random(SaeConfig(d_in=64, d_sae=64, layer=2, site="mlp_out"), seed=0).check_fits(model)


def test_dtype_is_explicit():
    sae = Sae.random(SaeConfig(d_in=D, d_sae=F, dtype="bfloat16"), seed=0)
    assert sae.W_enc.dtype == torch.bfloat16
    assert sae.encode(torch.randn(2, D)).dtype == torch.bfloat16
