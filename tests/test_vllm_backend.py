"""The vLLM backend: plan compilation, per-token routing and the residual edit run on CPU; the engine itself
needs vLLM and a GPU (skipped otherwise)."""

import pytest
import torch

from steerlab import AddVector, ClampLatents, Record, SteerLatent
from steerlab.engine.vllm_backend import compile_plan, edit_layer_output, oracle_agreement, require_vllm, token_rows
from steerlab.errors import SteerlabError
from steerlab.interventions.hooks import _apply_clamp, _ClampOp
from steerlab.sae import Sae, SaeConfig


def _sae(layer=1):
    return Sae.random(SaeConfig(d_in=16, d_sae=32, layer=layer, activation="relu"), seed=1)


def test_plan_holds_one_delta_row_per_request_and_a_zero_row():
    sae = _sae()
    ivs = [AddVector(1, torch.ones(16), 2.0), SteerLatent(sae, latent=torch.tensor([3, 5]), strength=torch.tensor([1.0, 4.0]))]
    plan = compile_plan(ivs, batch=2, n_layers=3)
    directions = SteerLatent(sae, latent=torch.tensor([3, 5]), strength=torch.tensor([1.0, 4.0])).as_add_vector().delta()
    assert plan[1].delta.shape == (3, 16)
    assert torch.allclose(plan[1].delta[:2], 2.0 + directions)
    assert torch.all(plan[1].delta[2] == 0)


@pytest.mark.parametrize("iv, message", [
    (AddVector(1, torch.ones(16), positions="generated"), "all positions"),
    (AddVector(7, torch.ones(16)), "Layer 7 does not exist"),
    (Record(1, name="r"), "Recording"),
])
def test_what_vllm_cannot_do_is_one_clear_error(iv, message):
    with pytest.raises(SteerlabError, match=message):
        compile_plan([iv], batch=1, n_layers=3)


def test_tokens_route_to_their_request_row():
    qsl = torch.tensor([0, 3, 4, 6])  # three requests: 3 prompt tokens, 1 decode token, 2 tokens
    rows = token_rows(qsl, torch.tensor([2, 0, 1]), n_tokens=8, none_row=9)
    assert rows.tolist() == [2, 2, 2, 0, 1, 1, 9, 9]


def test_edit_equals_the_hf_hooks_on_the_summed_stream():
    """vLLM layers return (hidden, residual); the edit must act on their sum exactly as the hf hooks act on the stream."""
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
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError()) if name == "vllm" else real(name, *a, **k))
    with pytest.raises(SteerlabError, match="--backend hf"):
        require_vllm()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the vllm backend needs a GPU")
def test_vllm_agrees_with_the_fp32_oracle(tiny_factory, tmp_path):
    pytest.importorskip("vllm")
    from steerlab.engine.vllm_backend import VllmBackend, check_against_oracle

    model = tiny_factory("llama")
    model.hf.save_pretrained(tmp_path / "m")
    model.tokenizer.save_pretrained(tmp_path / "m")
    backend = VllmBackend(str(tmp_path / "m"), dtype="float32", gpu_memory_utilization=0.3)
    prompts = ["How do you boil an egg?", "Explain how to iron a shirt."]
    plain = check_against_oracle(model, backend, prompts, max_new_tokens=16)
    steered = check_against_oracle(model, backend, prompts, [AddVector(1, torch.randn(2, model.arch.d_model), 4.0)], max_new_tokens=16)
    assert plain["token_agreement"] >= 0.9 and steered["token_agreement"] >= 0.9
