"""Every public SAE format: fixtures written in the format's own layout, read back, and compared with
that library's reference encode/decode formula; plus the steerlab writer round trip and bad files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from steerlab.errors import SteerlabError
from steerlab.sae import Sae, SaeConfig, load_sae, save_sae
from steerlab.sae.loading import detect_format, resolve_release

D, F = 16, 48


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def x():
    return _rand(5, 7, D, seed=99) * 3


def _close(a, b):
    torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-5)


def test_saelens_standard_v6(tmp_path, x):
    W_enc, W_dec, b_enc, b_dec = _rand(D, F, seed=1), _rand(F, D, seed=2), _rand(F, seed=3), _rand(D, seed=4)
    save_file(
        {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}, str(tmp_path / "sae_weights.safetensors")
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {
                "architecture": "standard",
                "d_in": D,
                "d_sae": F,
                "dtype": "float32",
                "apply_b_dec_to_input": True,
                "normalize_activations": "none",
                "metadata": {"hook_name": "blocks.6.hook_resid_pre", "model_name": "gpt2"},
            }
        )
    )
    sae = load_sae(tmp_path)
    assert (sae.layer, sae.site, sae.cfg.activation, sae.cfg.model) == (6, "resid_pre", "relu", "gpt2")
    z_ref = torch.relu((x - b_dec) @ W_enc + b_enc)  # SAELens StandardSAE
    _close(sae.encode(x), z_ref)
    _close(sae.decode(z_ref), z_ref @ W_dec + b_dec)


def test_saelens_topk_pre6_layout(tmp_path, x):
    W_enc, W_dec, b_enc, b_dec = _rand(D, F, seed=5), _rand(F, D, seed=6), _rand(F, seed=7), _rand(D, seed=8)
    save_file(
        {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec}, str(tmp_path / "sae_weights.safetensors")
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {
                "architecture": "standard",
                "activation_fn_str": "topk",
                "activation_fn_kwargs": {"k": 4},
                "d_in": D,
                "d_sae": F,
                "hook_name": "blocks.3.hook_mlp_out",
                "hook_layer": 3,
                "apply_b_dec_to_input": False,
                "normalize_activations": "none",
            }
        )
    )
    sae = load_sae(tmp_path)
    assert (sae.layer, sae.site, sae.cfg.activation, sae.cfg.k) == (3, "mlp_out", "topk", 4)
    pre = x @ W_enc + b_enc
    vals, idx = pre.topk(4, dim=-1)
    z_ref = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    _close(sae.encode(x), z_ref)
    assert int((sae.encode(x) > 0).sum(-1).max()) <= 4


def test_saelens_jumprelu(tmp_path, x):
    W_enc, W_dec, b_enc, b_dec = _rand(D, F, seed=9), _rand(F, D, seed=10), _rand(F, seed=11), _rand(D, seed=12)
    threshold = _rand(F, seed=13).abs()
    save_file(
        {"W_enc": W_enc, "W_dec": W_dec, "b_enc": b_enc, "b_dec": b_dec, "threshold": threshold},
        str(tmp_path / "sae_weights.safetensors"),
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {
                "architecture": "jumprelu",
                "d_in": D,
                "d_sae": F,
                "apply_b_dec_to_input": True,
                "normalize_activations": "none",
                "metadata": {"hook_name": "blocks.1.hook_resid_post"},
            }
        )
    )
    sae = load_sae(tmp_path)
    pre = (x - b_dec) @ W_enc + b_enc
    _close(sae.encode(x), torch.relu(pre) * (pre > threshold))


def test_gemmascope_npz(tmp_path, x):
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_12" / "width_16k" / "average_l0_82"
    folder.mkdir(parents=True)
    W_enc, W_dec = _rand(D, F, seed=14).numpy(), _rand(F, D, seed=15).numpy()
    b_enc, b_dec, threshold = _rand(F, seed=16).numpy(), _rand(D, seed=17).numpy(), np.abs(_rand(F, seed=18).numpy())
    np.savez(folder / "params.npz", W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, b_dec=b_dec, threshold=threshold)
    sae = load_sae(folder)
    assert (sae.layer, sae.site, sae.cfg.activation, sae.cfg.apply_b_dec_to_input) == (
        12,
        "resid_post",
        "jumprelu",
        False,
    )
    # Gemma Scope tutorial: pre = x @ W_enc + b_enc; acts = (pre > threshold) * relu(pre); recon = acts @ W_dec + b_dec
    pre = x @ torch.from_numpy(W_enc) + torch.from_numpy(b_enc)
    z_ref = (pre > torch.from_numpy(threshold)) * torch.relu(pre)
    _close(sae.encode(x), z_ref)
    _close(sae(x), z_ref @ torch.from_numpy(W_dec) + torch.from_numpy(b_dec))
    assert load_sae(folder / "params.npz").layer == 12


def test_goodfire_pth(tmp_path, x):
    enc = torch.nn.Linear(D, F)
    dec = torch.nn.Linear(F, D)
    torch.manual_seed(0)
    sd = {
        "encoder_linear.weight": enc.weight.data,
        "encoder_linear.bias": enc.bias.data,
        "decoder_linear.weight": dec.weight.data,
        "decoder_linear.bias": dec.bias.data,
    }
    path = tmp_path / "Llama-3.1-8B-Instruct-SAE-l19.pth"
    torch.save(sd, path)
    sae = load_sae(path)
    assert (sae.layer, sae.site, sae.cfg.apply_b_dec_to_input) == (19, "resid_post", False)
    z_ref = torch.relu(enc(x))  # Goodfire SAE.encode
    _close(sae.encode(x), z_ref.detach())
    _close(sae.decode(z_ref.detach()), dec(z_ref).detach())


def test_dictionary_learning_autoencoder(tmp_path, x):
    sd = {
        "bias": _rand(D, seed=20),
        "encoder.weight": _rand(F, D, seed=21),
        "encoder.bias": _rand(F, seed=22),
        "decoder.weight": _rand(D, F, seed=23),
    }
    torch.save(sd, tmp_path / "ae.pt")
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "trainer": {
                    "dict_class": "AutoEncoder",
                    "activation_dim": D,
                    "dict_size": F,
                    "layer": 4,
                    "lm_name": "EleutherAI/pythia-70m-deduped",
                    "submodule_name": "resid_post_layer_4",
                }
            }
        )
    )
    sae = load_sae(tmp_path)
    assert (sae.layer, sae.site, sae.cfg.activation) == (4, "resid_post", "relu")
    z_ref = torch.relu((x - sd["bias"]) @ sd["encoder.weight"].T + sd["encoder.bias"])
    _close(sae.encode(x), z_ref)
    _close(sae.decode(z_ref), z_ref @ sd["decoder.weight"].T + sd["bias"])


def test_dictionary_learning_batchtopk_uses_threshold(tmp_path, x):
    sd = {
        "encoder.weight": _rand(F, D, seed=24),
        "encoder.bias": _rand(F, seed=25),
        "decoder.weight": _rand(D, F, seed=26),
        "b_dec": _rand(D, seed=27),
        "k": torch.tensor(6),
        "threshold": torch.tensor(1.5),
    }
    torch.save(sd, tmp_path / "ae.pt")
    (tmp_path / "config.json").write_text(json.dumps({"trainer": {"dict_class": "BatchTopKSAE", "layer": 2, "k": 6}}))
    sae = load_sae(tmp_path / "ae.pt")
    assert sae.cfg.activation == "batchtopk" and sae.cfg.k == 6
    post = torch.relu((x - sd["b_dec"]) @ sd["encoder.weight"].T + sd["encoder.bias"])
    z_ref = post * (post > sd["threshold"])  # BatchTopKSAE.encode(use_threshold=True)
    _close(sae.encode(x), z_ref)
    sae.cfg.batchtopk_inference = "topk"  # the same weights read as per-token TopK
    vals, idx = post.topk(6, dim=-1)
    _close(sae.encode(x), torch.zeros_like(post).scatter(-1, idx, vals))


def test_dictionary_learning_jumprelu_folds_decoder_norms(tmp_path, x):
    W_dec = _rand(F, D, seed=28) * 3
    sd = {
        "W_enc": _rand(D, F, seed=29),
        "b_enc": _rand(F, seed=30),
        "W_dec": W_dec,
        "b_dec": _rand(D, seed=31),
        "threshold": _rand(F, seed=32).abs(),
    }
    torch.save(sd, tmp_path / "ae.pt")
    sae = load_sae(tmp_path, layer=5)
    pre = x @ sd["W_enc"] + sd["b_enc"]
    f = torch.relu(pre * (pre > sd["threshold"])) * W_dec.norm(dim=1)  # JumpReluAutoEncoder.encode
    _close(sae.encode(x), f)
    _close(sae.decode(f), (f / W_dec.norm(dim=1)) @ W_dec + sd["b_dec"])  # .decode
    _close(sae.W_dec.norm(dim=1), torch.ones(F))


def test_sparsify_folder(tmp_path, x):
    folder = tmp_path / "layers.7"
    folder.mkdir()
    enc_w, enc_b, W_dec, b_dec = _rand(F, D, seed=33), _rand(F, seed=34), _rand(F, D, seed=35), _rand(D, seed=36)
    save_file(
        {"encoder.weight": enc_w, "encoder.bias": enc_b, "W_dec": W_dec, "b_dec": b_dec},
        str(folder / "sae.safetensors"),
    )
    (folder / "cfg.json").write_text(
        json.dumps(
            {
                "expansion_factor": 3,
                "normalize_decoder": True,
                "num_latents": 0,
                "k": 5,
                "multi_topk": False,
                "skip_connection": False,
                "d_in": D,
            }
        )
    )
    sae = load_sae(folder)
    assert (sae.layer, sae.site, sae.cfg.k) == (7, "resid_post", 5)
    post = torch.relu((x - b_dec) @ enc_w.T + enc_b)  # SparseCoder.encode: relu then top-k
    vals, idx = post.topk(5, dim=-1)
    z_ref = torch.zeros_like(post).scatter(-1, idx, vals)
    _close(sae.encode(x), z_ref)
    _close(sae(x), (vals.unsqueeze(-1) * W_dec[idx]).sum(-2) + b_dec)  # decode: top_acts @ W_dec[top_indices] + b_dec


@pytest.mark.parametrize("activation", ["relu", "topk", "batchtopk", "jumprelu"])
@pytest.mark.parametrize("normalization,scale", [("none", 1.0), ("expected_average_norm", 0.37)])
def test_steerlab_writer_round_trip(tmp_path, x, activation, normalization, scale):
    cfg = SaeConfig(
        d_in=D,
        d_sae=F,
        activation=activation,
        k=5 if activation in ("topk", "batchtopk") else None,
        input_scale=scale,
        normalization=normalization,
        layer=2,
        site="attn_out",
        model="tiny",
    )
    sae = Sae.random(cfg, seed=3)
    with torch.no_grad():
        sae.b_enc.copy_(_rand(F, seed=40) * 0.1)
        sae.b_dec.copy_(_rand(D, seed=41))
        sae.threshold.copy_(_rand(F, seed=42).abs() * 0.5)
    folder = save_sae(sae, tmp_path / "out")
    assert (folder / "cfg.json").is_file() and (folder / "sae_weights.safetensors").is_file()
    cfg_json = json.loads((folder / "cfg.json").read_text())
    assert cfg_json["metadata"]["hook_name"] == "blocks.2.hook_attn_out" and cfg_json["normalize_activations"] == "none"
    back = load_sae(folder)
    assert (back.layer, back.site, back.cfg.activation, back.cfg.k) == (2, "attn_out", activation, cfg.k)
    _close(back.encode(x), sae.encode(x))
    _close(back(x), sae(x))
    _close(back.direction(7), sae.direction(7))
    _close(back.decode_delta(torch.ones(3), [1, 2, 3]), sae.decode_delta(torch.ones(3), [1, 2, 3]))


def test_detect_format(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(SteerlabError, match="holds no SAE"):
        detect_format(tmp_path / "a")


def test_truncated_safetensors_is_one_sentence(tmp_path):
    sae = Sae.random(SaeConfig(d_in=D, d_sae=F), seed=0)
    folder = save_sae(sae, tmp_path / "s")
    data = (folder / "sae_weights.safetensors").read_bytes()
    (folder / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SteerlabError, match="unreadable or truncated"):
        load_sae(folder)


def test_corrupt_npz_and_json(tmp_path):
    (tmp_path / "params.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(SteerlabError, match="unreadable or truncated"):
        load_sae(tmp_path / "params.npz", layer=0)
    sae = Sae.random(SaeConfig(d_in=D, d_sae=F), seed=0)
    folder = save_sae(sae, tmp_path / "s")
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(SteerlabError, match="not valid JSON"):
        load_sae(folder)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_that_would_execute_code_is_refused(tmp_path, capsys):
    path = tmp_path / "Model-SAE-l3.pth"
    torch.save({"encoder_linear.weight": torch.zeros(F, D), "payload": _Evil()}, path)
    with pytest.raises(SteerlabError, match="could execute code"):
        load_sae(path)
    assert "this must never run" not in capsys.readouterr().out
    raw = tmp_path / "ae.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(SteerlabError):
        load_sae(raw, layer=0)
    assert "this must never run" not in capsys.readouterr().out


def test_object_npz_is_refused(tmp_path):
    np.savez(tmp_path / "params.npz", W_enc=np.array([_Evil()], dtype=object))
    with pytest.raises(SteerlabError, match="pickled"):
        load_sae(tmp_path / "params.npz", layer=0)


def test_shape_mismatch_in_file(tmp_path):
    save_file(
        {"W_enc": torch.zeros(D, F), "W_dec": torch.zeros(F + 1, D), "b_enc": torch.zeros(F), "b_dec": torch.zeros(D)},
        str(tmp_path / "sae_weights.safetensors"),
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {"architecture": "standard", "d_in": D, "d_sae": F, "metadata": {"hook_name": "blocks.0.hook_resid_post"}}
        )
    )
    with pytest.raises(SteerlabError, match="W_dec"):
        load_sae(tmp_path)


def test_wrong_hook_point_in_config(tmp_path):
    save_file(
        {"W_enc": torch.zeros(D, F), "W_dec": torch.zeros(F, D), "b_enc": torch.zeros(F), "b_dec": torch.zeros(D)},
        str(tmp_path / "sae_weights.safetensors"),
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {"architecture": "standard", "d_in": D, "d_sae": F, "metadata": {"hook_name": "blocks.0.attn.hook_pattern"}}
        )
    )
    with pytest.raises(SteerlabError, match="not one steerlab can read"):
        load_sae(tmp_path)


def test_unknown_release_and_reference():
    with pytest.raises(SteerlabError, match="Unknown SAE release 'no-such-release'"):
        load_sae("no-such-release:blocks.0.hook_resid_post")
    assert resolve_release("gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_9") == (
        "google/gemma-scope-2b-pt-res",
        "layer_3/width_16k/average_l0_9/params.npz",
    )
    with pytest.raises(SteerlabError, match="not a local path"):
        load_sae("nothing-here")


def test_hub_reference_offline_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(SteerlabError, match="not in the local Hugging Face cache"):
        load_sae("hf://google/gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_9/params.npz")
    with pytest.raises(SteerlabError, match="not in the local Hugging Face cache"):
        load_sae("gemma-scope-2b-pt-res:layer_3/width_16k/average_l0_9")


def test_foreign_formats_convert_to_saelens_as_the_same_function(tmp_path, x):
    """Gemma Scope (no b_dec on input) and dictionary_learning JumpReLU (folded norms) survive conversion."""
    gs = tmp_path / "layer_4"
    gs.mkdir()
    np.savez(
        gs / "params.npz",
        W_enc=_rand(D, F, seed=50).numpy(),
        W_dec=_rand(F, D, seed=51).numpy(),
        b_enc=_rand(F, seed=52).numpy(),
        b_dec=_rand(D, seed=53).numpy(),
        threshold=np.abs(_rand(F, seed=54).numpy()),
    )
    dl = tmp_path / "dl"
    dl.mkdir()
    torch.save(
        {
            "W_enc": _rand(D, F, seed=55),
            "b_enc": _rand(F, seed=56),
            "W_dec": _rand(F, D, seed=57) * 2,
            "b_dec": _rand(D, seed=58),
            "threshold": _rand(F, seed=59).abs(),
        },
        dl / "ae.pt",
    )
    for src in (load_sae(gs), load_sae(dl, layer=4)):
        back = load_sae(save_sae(src, tmp_path / f"conv-{src.cfg.extra['format']}"))
        _close(back.encode(x), src.encode(x))
        _close(back(x), src(x))
        assert back.cfg.apply_b_dec_to_input == src.cfg.apply_b_dec_to_input
