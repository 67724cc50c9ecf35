"""The vLLM backend's pure parts (plan compilation, the wire form, per-token routing, the residual edit) in the main
venv; the engine itself runs in the `vllm` tier (tests/test_vllm_engine.py, `make test-vllm`)."""

import pytest
import torch

from steerlab import AddVector, ClampLatents, MaskUnits, Record, SteerLatent
from steerlab.engine.vllm_backend import (
    compile_plan,
    edit_layer_output,
    oracle_agreement,
    plan_from_wire,
    plan_to_wire,
    require_vllm,
    token_rows,
)
from steerlab.errors import SteerlabError
from steerlab.interventions.hooks import _apply_clamp, _ClampOp
from steerlab.sae import Sae, SaeConfig


def _sae(layer=1):
    return Sae.random(SaeConfig(d_in=16, d_sae=32, layer=layer, activation="relu"), seed=1)


def test_plan_holds_one_delta_row_per_request_and_a_zero_row():
    sae = _sae()
    ivs = [
        AddVector(1, torch.ones(16), 2.0),
        SteerLatent(sae, latent=torch.tensor([3, 5]), strength=torch.tensor([1.0, 4.0])),
    ]
    plan = compile_plan(ivs, batch=2, n_layers=3)
    directions = (
        SteerLatent(sae, latent=torch.tensor([3, 5]), strength=torch.tensor([1.0, 4.0])).as_add_vector().delta()
    )
    assert plan[1].delta.shape == (3, 16)
    assert torch.allclose(plan[1].delta[:2], 2.0 + directions)
    assert torch.all(plan[1].delta[2] == 0)


@pytest.mark.parametrize(
    "iv, message",
    [
        (AddVector(1, torch.ones(16), positions="generated"), "all positions"),
        (AddVector(7, torch.ones(16)), "Layer 7 does not exist"),
        (Record(1, name="r"), "Recording"),
        (AddVector(1, torch.ones(16), site="attn_out"), "resid_post only"),
        (MaskUnits(1, "head", torch.ones(4)), "MaskUnits"),
    ],
)
def test_what_vllm_cannot_do_is_one_clear_error(iv, message):
    with pytest.raises(SteerlabError, match=message):
        compile_plan([iv], batch=1, n_layers=3)


def test_tokens_route_to_their_request_row():
    qsl = torch.tensor([0, 3, 4, 6])  # three requests: 3 prompt tokens, 1 decode token, 2 tokens
    rows = token_rows(qsl, torch.tensor([2, 0, 1]), n_tokens=8, none_row=9)
    assert rows.tolist() == [2, 2, 2, 0, 1, 1, 9, 9]


def test_edit_equals_the_hf_hooks_on_the_summed_stream():
    """vLLM layers return (hidden, residual); the edit acts on their sum exactly as the hf hooks act on the stream."""
    torch.manual_seed(0)
    sae = _sae()
    vec = torch.randn(2, 16)
    ivs = [AddVector(1, vec, torch.tensor([1.0, 3.0])), ClampLatents(sae, latents=((2, 4), (7,)), value=0.0)]
    plan = compile_plan(ivs, batch=2, n_layers=3)[1]
    hidden, residual = torch.randn(5, 16), torch.randn(5, 16)
    rows = torch.tensor([0, 0, 0, 1, 1])
    new_hidden = edit_layer_output(hidden, residual, plan, rows)
    stream = (hidden + residual).unsqueeze(0)  # one [1, T, d] "batch" per row, edited the hf way
    for r, toks in ((0, slice(0, 3)), (1, slice(3, 5))):
        s = stream[:, toks]
        latents = torch.tensor([2, 4, 7])
        active = torch.tensor([[True, True, False]]) if r == 0 else torch.tensor([[False, False, True]])
        op = _ClampOp(sae, "all", latents, active, torch.zeros(1, 3))
        expect = _apply_clamp(s, op, torch.ones(s.shape[:2], dtype=torch.bool)) + vec[r] * (1.0 if r == 0 else 3.0)
        assert torch.allclose((new_hidden + residual)[toks], expect[0], atol=1e-5)


def test_agreement_counts_tokens_before_the_first_difference():
    got = oracle_agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [5, 6]])
    assert got == {"token_agreement": 4 / 6, "identical_rows": 0.5}


def test_without_vllm_the_error_says_what_to_do(monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda name, *a, **k: (_ for _ in ()).throw(ImportError()) if name == "vllm" else real(name, *a, **k),
    )
    with pytest.raises(SteerlabError, match="--backend hf"):
        require_vllm()


def _same_plan(a, b):
    assert a.keys() == b.keys()
    for layer in a:
        assert (a[layer].delta is None) == (b[layer].delta is None)
        if a[layer].delta is not None:
            assert torch.equal(a[layer].delta, b[layer].delta)
        assert len(a[layer].clamps) == len(b[layer].clamps)


@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_the_wire_form_is_plain_data_and_edits_exactly_as_the_plan(activation):
    """str/bytes only (what vLLM's msgpack carries without pickles); the rebuilt plan edits the stream identically."""
    torch.manual_seed(0)
    cfg = SaeConfig(d_in=16, d_sae=32, layer=1, activation=activation, k=4 if activation == "topk" else None)
    sae = Sae.random(cfg, seed=2)
    with torch.no_grad():
        sae.b_enc.add_(0.3)
    ivs = [
        SteerLatent(sae, latent=torch.tensor([3, 5, 9]), strength=torch.tensor([1.0, 0.0, 4.0])),
        ClampLatents(sae, latents=((2, 4), (), (7, 4)), value=torch.tensor([0.0, 0.0, 2.0])),
    ]
    plan = compile_plan(ivs, batch=3, n_layers=3)
    wire = plan_to_wire(plan, 3)
    assert set(wire) == {"header", "tensors"} and isinstance(wire["header"], str) and isinstance(wire["tensors"], bytes)
    rebuilt, batch = plan_from_wire(wire)
    assert batch == 3
    _same_plan(plan, rebuilt)
    hidden, residual = torch.randn(7, 16), torch.randn(7, 16)
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    assert torch.allclose(
        edit_layer_output(hidden, residual, plan[1], rows),
        edit_layer_output(hidden, residual, rebuilt[1], rows),
        atol=1e-6,
    )
    if activation == "relu":  # a per-latent SAE travels cut down to the clamped latents
        assert rebuilt[1].clamps[0].sae.d_sae == 3


def test_an_empty_plan_travels_too():
    assert plan_from_wire(plan_to_wire({}, 0)) == ({}, 0)


def test_a_plan_from_another_wire_version_is_refused():
    wire = plan_to_wire({}, 0)
    wire["header"] = wire["header"].replace('"steerlab_plan": 1', '"steerlab_plan": 99')
    with pytest.raises(SteerlabError, match="wire version 99"):
        plan_from_wire(wire)


@pytest.mark.parametrize(
    "args", [["serve", "smollm2-135m-instruct", "--backend", "tgi"], ["esr", "run", "RUN", "--backend", "tgi"]]
)
def test_an_unknown_backend_is_one_sentence(run_cli, tmp_path, args):
    code, out = run_cli(*[str(tmp_path / "run") if a == "RUN" else a for a in args])
    assert code == 2 and "Unknown backend 'tgi'; choose hf or vllm." in out and "Traceback" not in out


def test_serve_with_vllm_missing_says_how_to_install(run_cli, monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda name, *a, **k: (_ for _ in ()).throw(ImportError()) if name == "vllm" else real(name, *a, **k),
    )
    code, out = run_cli("serve", "smollm2-135m-instruct", "--backend", "vllm")
    assert code == 2 and "make test-vllm builds one" in out
