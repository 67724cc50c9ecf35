"""Harvesting, the shuffling buffer and the trainer, on a tiny random-weight model (seconds)."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from steerlab.data import Corpus
from steerlab.errors import SteerlabError
from steerlab.sae import load_sae
from steerlab.sae.buffer import ShufflingBuffer
from steerlab.sae.harvest import SiteCapture, harvest_batch, iter_activations, special_ids, token_rows
from steerlab.sae.train import TrainConfig, train_sae

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Sparse autoencoders decompose activations into features.",
    "def add(a, b):\n    return a + b\n",
    "Residual streams carry information between layers of a transformer.",
    "Python's for statement iterates over the items of any sequence.",
    [
        {"role": "user", "content": "What is a latent?"},
        {"role": "assistant", "content": "A direction the SAE learned."},
    ],
] * 6


@pytest.fixture
def corpus():
    return Corpus(
        "tiny",
        [t if isinstance(t, str) else list(t) for t in TEXTS]
        + [f"document number {i} about topic {i % 7}" for i in range(60)],
    )


def test_harvest_excludes_specials_first_token_and_padding(tiny_factory):
    model = tiny_factory("llama")
    rows = [ids for _, ids in token_rows(model, TEXTS[:6], context_len=32)]
    specials = special_ids(model)
    with SiteCapture(model, 1, "resid_post") as cap:
        h = harvest_batch(cap, rows, specials)
        full = cap.run(*_padded(model, rows))
    assert not torch.isin(h.token_ids, specials).any()
    assert (h.position > 0).all()
    expected = sum(sum(1 for p, t in enumerate(r) if p > 0 and t not in specials.tolist()) for r in rows)
    assert h.acts.shape == (expected, 64)
    # each harvested vector is the activation at its (row, position)
    torch.testing.assert_close(h.acts, full[h.row, h.position])


def _padded(model, rows):
    from steerlab.sae.harvest import right_pad

    return right_pad(rows, model.tokenizer.pad_token_id, model.device)


def test_harvest_stops_at_the_layer(tiny_factory):
    model = tiny_factory("llama")
    calls = []
    handle = model.arch.layers[2].register_forward_hook(lambda *a: calls.append(1))
    try:
        with contextlib.closing(iter_activations(model, TEXTS[:4], 0, "resid_post", context_len=16)) as stream:
            acts = next(stream)[0]
    finally:
        handle.remove()
    assert acts.shape[1] == 64 and not calls  # layer 2 never ran
    assert not model.arch.layers[0]._forward_hooks  # the capture hook is gone


def test_long_documents_are_windowed_with_bos(tiny_factory):
    model = tiny_factory("llama")
    windows = [ids for _, ids in token_rows(model, ["x" * 100], context_len=40)]
    assert all(len(w) <= 40 for w in windows) and len(windows) == 3
    assert all(w[0] == model.tokenizer.bos_token_id for w in windows)
    assert sum(len(w) - 1 for w in windows) == 100  # every text token appears once after a BOS


def test_buffer_serves_every_activation_and_refills():
    chunks = (torch.full((10, 2), float(i)) for i in range(100))
    buf = ShufflingBuffer(chunks, capacity=40, d=2, reuse=1.0, seed=0)
    first = torch.cat([buf.next_batch(10) for _ in range(2)])  # half the buffer, before any refill
    assert set(first[:, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0} and len(set(first[:, 0].tolist())) > 1  # mixed chunks
    later = torch.cat([buf.next_batch(10) for _ in range(8)])
    assert later[:, 0].max() >= 4  # fresh activations replaced the oldest half
    assert buf.harvested >= 60


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "relu"])
def test_training_reduces_loss_and_writes_outputs(tiny_factory, corpus, tmp_path, arch):
    model = tiny_factory("llama")
    cfg = TrainConfig(
        layer=1,
        arch=arch,
        d_sae=128,
        k=8,
        n_tokens=128 * 60,
        batch_size=128,
        buffer_tokens=2048,
        warmup_steps=5,
        log_every=5,
        checkpoint_every=0,
        lr=3e-3,
        l0_coeff=1e-3,
    )
    res = train_sae(model, corpus, cfg, tmp_path, progress=False)
    hist = res.history
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"], (hist[0], hist[-1])
    assert hist[-1]["fvu"] < 0.8 * hist[0]["fvu"], (hist[0], hist[-1])
    assert {"loss", "fvu", "l0", "dead_frac", "tokens"} <= set(hist[-1])
    for name in (
        "metrics.json",
        "training_curve.png",
        "train_config.json",
        "sae/cfg.json",
        "sae/sae_weights.safetensors",
    ):
        assert (tmp_path / name).is_file(), name
    back = load_sae(tmp_path / "sae")
    x = torch.randn(20, 64) * 3
    torch.testing.assert_close(back(x), res.sae(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(res.sae.W_dec.norm(dim=1), torch.ones(128), rtol=1e-4, atol=1e-4)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["hook_name"] == "blocks.1.hook_resid_post" and metrics["d_sae"] == 128
    if arch == "topk":
        assert hist[-1]["l0"] <= 8
    if arch == "batchtopk":
        assert res.sae.cfg.batchtopk_inference == "threshold" and float(res.sae.threshold[0]) > 0


def test_training_resumes_from_a_checkpoint(tiny_factory, corpus, tmp_path):
    model = tiny_factory("llama")
    base = dict(
        layer=1,
        arch="topk",
        d_sae=96,
        k=6,
        batch_size=64,
        buffer_tokens=1024,
        warmup_steps=3,
        log_every=1,
        checkpoint_every=10,
        lr=2e-3,
    )

    class Stop(Exception):
        pass

    def stop_at_15(logs):
        if logs["step"] == 14:
            raise Stop

    with pytest.raises(Stop):
        train_sae(model, corpus, TrainConfig(n_tokens=64 * 30, **base), tmp_path, progress=False, on_log=stop_at_15)
    assert (tmp_path / "checkpoint.pt").is_file()
    seen = []
    res = train_sae(
        model,
        corpus,
        TrainConfig(n_tokens=64 * 30, **base),
        tmp_path,
        progress=False,
        on_log=lambda l: seen.append(l["step"]),
    )
    assert seen[0] == 10 and seen[-1] == 29  # continued from the step-10 checkpoint
    assert len(res.history) == 30 and not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(SteerlabError, match="other settings"):
        (tmp_path / "checkpoint.pt").write_bytes(b"")
        torch.save({"config": {"different": True}}, tmp_path / "checkpoint.pt")
        train_sae(model, corpus, TrainConfig(n_tokens=64 * 30, **base), tmp_path, progress=False)


def test_bad_training_input(tiny_factory, corpus, tmp_path):
    model = tiny_factory("llama")
    with pytest.raises(SteerlabError, match="Unknown SAE architecture"):
        TrainConfig(layer=0, arch="gated")
    with pytest.raises(SteerlabError, match="Layer 9 is out of range"):
        train_sae(model, corpus, TrainConfig(layer=9, n_tokens=2048), tmp_path, progress=False)
    with pytest.raises(SteerlabError, match="Unknown site"):
        train_sae(model, corpus, TrainConfig(layer=0, site="resid_mid", n_tokens=2048), tmp_path, progress=False)
