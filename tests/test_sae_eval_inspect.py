"""Evaluation (FVU, L0, dead/dense, CE recovered with the SAE spliced in) and latent inspection, on a tiny model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from steerlab.sae import Sae, SaeConfig
from steerlab.sae.evaluate import evaluate_sae, replace_site
from steerlab.sae.harvest import iter_activations
from steerlab.sae.inspect import collect_latent_stats, import_labels, inspect_sae, latent_report

DOCS = [f"Line {i}: the cat sat on the mat while {i % 5} dogs barked at {chr(97 + i % 26)}." for i in range(30)]


def _exact_sae(d: int, layer: int = 1) -> Sae:
    """relu(x) - relu(-x) = x: a 2d-latent ReLU SAE that reconstructs perfectly."""
    cfg = SaeConfig(d_in=d, d_sae=2 * d, activation="relu", apply_b_dec_to_input=False, layer=layer)
    sae = Sae(cfg)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
    return sae


def test_perfect_sae_recovers_all_ce_and_zero_sae_none(tiny_factory):
    model = tiny_factory("llama")
    perfect = evaluate_sae(model, _exact_sae(64), DOCS, n_tokens=500, ce_tokens=300)
    assert perfect.fvu < 1e-9
    assert perfect.ce_sae == pytest.approx(perfect.ce_clean, abs=1e-4)
    assert perfect.ce_recovered == pytest.approx(1.0, abs=1e-3)
    assert perfect.ce_zero > perfect.ce_clean  # zero-ablating a layer hurts
    zero = Sae(SaeConfig(d_in=64, d_sae=8, layer=1))  # all-zero weights: decodes to 0
    nothing = evaluate_sae(model, zero, DOCS, n_tokens=500, ce_tokens=300)
    acts = torch.cat([a for a, _ in iter_activations(model, DOCS, 1, "resid_post")])[:500].double()
    assert nothing.fvu == pytest.approx(float(acts.pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()), rel=1e-6)
    assert nothing.ce_recovered == pytest.approx(0.0, abs=1e-4)
    assert nothing.dead_frac == 1.0 and nothing.l0 == 0.0


def test_fvu_l0_dead_dense_match_direct_computation(tiny_factory):
    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=64, d_sae=256, activation="topk", k=4, layer=1, apply_b_dec_to_input=False), seed=0)
    with torch.no_grad():
        sae.W_enc[:, 200:] = -10.0  # these latents never win: dead
        sae.b_enc[200:] = -100.0
    ev = evaluate_sae(model, sae, DOCS, n_tokens=400, ce_tokens=0)
    acts = torch.cat([a for a, _ in iter_activations(model, DOCS, 1, "resid_post")])[:400]
    with torch.no_grad():
        z = sae.encode(acts)
        recon = sae.decode(z)
    fvu = float((recon - acts).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum())
    assert ev.fvu == pytest.approx(fvu, rel=1e-4)
    assert ev.l0 == pytest.approx(float((z > 0).sum(-1).float().mean()), rel=1e-6)
    freq = (z > 0).float().mean(0)
    assert ev.dead_frac == pytest.approx(float((freq == 0).float().mean()))
    assert ev.dense_frac == pytest.approx(float((freq > 0.1).float().mean()))
    assert ev.dead_frac >= 56 / 256 and ev.ce_recovered is None
    assert not model.arch.layers[1]._forward_hooks  # stopping after n_tokens removed the capture hook


def test_splice_hook_always_removed(tiny_factory):
    model = tiny_factory("llama")
    module = model.arch.layers[1]
    with pytest.raises(RuntimeError):
        with replace_site(model, 1, "resid_post", lambda h: h * 0):
            raise RuntimeError("boom")
    assert not module._forward_hooks


def test_inspect_finds_the_top_contexts_and_writes_outputs(tiny_factory, tmp_path):
    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=64, d_sae=32, activation="relu", layer=1, apply_b_dec_to_input=False), seed=2)
    with torch.no_grad():
        sae.b_enc.fill_(-0.2)
    stats = collect_latent_stats(model, sae, DOCS, n_tokens=5000, top_n=5)
    acts = torch.cat([a for a, _ in iter_activations(model, DOCS, 1, "resid_post", batch_rows=8)])
    with torch.no_grad():
        z = sae.encode(acts)
    latent = int((z > 0).float().mean(0).argmax())
    assert (z[:, latent] > 0).sum() >= 5
    torch.testing.assert_close(stats.top_vals[:, latent], z[:, latent].topk(5).values)
    assert stats.freq[latent] == pytest.approx(float((z[:, latent] > 0).float().mean()))
    report = latent_report(model, stats, latent)
    assert len(report.contexts) == 5
    for ctx, value in zip(report.contexts, z[:, latent].topk(5).values):
        assert ctx.acts[ctx.peak] == pytest.approx(float(value), rel=1e-5)  # the highlighted token is the peak
    reports = inspect_sae(model, sae, DOCS, tmp_path, n_tokens=5000)
    page = (tmp_path / "dashboard.html").read_text()
    assert f"latent {latent}:" in page and "<span" in page
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(32)) and all(r["label"] for r in rows)
    assert len(reports) == 32


def test_import_neuronpedia_labels(tmp_path):
    path = tmp_path / "np.json"
    path.write_text(
        json.dumps(
            [
                {
                    "modelId": "gemma-2-2b",
                    "layer": "12-gemmascope-res-16k",
                    "index": "7",
                    "description": "references to cats",
                }
            ]
        )
    )
    assert import_labels(path) == {7: "references to cats"}
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("index,label\n3,dogs\n")
    assert import_labels(csv_path) == {3: "dogs"}


def test_llm_labels_from_an_openai_compatible_endpoint(tiny_factory, tmp_path):
    from fake_llm_server import FakeLLMServer, chat_reply
    from steerlab.sae.inspect import http_labeler

    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=64, d_sae=16, activation="relu", layer=1, apply_b_dec_to_input=False), seed=2)
    with FakeLLMServer(lambda path, body, headers: (200, chat_reply("mentions of mats"), {})) as server:
        reports = inspect_sae(
            model, sae, DOCS, tmp_path, latents=[0, 1, 2], n_tokens=800, labeler=http_labeler(server.url)
        )
        prompt = server.posts()[0]["body"]["messages"][0]["content"]
    alive = [r for r in reports if r.frequency > 0]
    assert alive and all(r.label == "mentions of mats" for r in alive)
    assert "[[" in prompt and "feature" in prompt  # the prompt shows the contexts with the peak token marked
    assert "mentions of mats" in (tmp_path / "labels.csv").read_text()
