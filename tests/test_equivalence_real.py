"""The oracle tests on the packaged SmolLM2 (fp32, greedy): marked `real`, run by `make test` and CI."""

import pytest
import torch
from tests.helpers import full_recompute_logits

import steerlab
from steerlab import AddVector, MaskUnits

pytestmark = pytest.mark.real

PROMPTS = ["How do you boil an egg?", "Explain how to tie a tie in a few steps, please.", "Hi!"]


def test_strength_zero_equals_no_steering(smollm):
    vec = torch.randn(smollm.arch.d_model)
    plain = steerlab.generate(smollm, PROMPTS, max_new_tokens=16)
    zero = steerlab.generate(smollm, PROMPTS, [AddVector(12, vec, 0.0)], max_new_tokens=16)
    assert [g.token_ids for g in plain] == [g.token_ids for g in zero]


def test_cached_equals_full_recompute_with_steering(smollm):
    torch.manual_seed(0)
    vec = torch.randn(smollm.arch.d_model)
    ivs = [AddVector(10, vec / vec.norm(), 8.0, positions="generated")]
    gen = steerlab.generate(smollm, PROMPTS[:1], ivs, max_new_tokens=16, return_logprobs=True)[0]
    logits = full_recompute_logits(smollm, gen.prompt_ids, gen.token_ids, ivs)
    n = len(gen.prompt_ids)
    window = logits[n - 1 : n - 1 + len(gen.token_ids)]
    assert window.argmax(-1).tolist() == gen.token_ids
    expected = torch.log_softmax(window, -1).gather(-1, torch.tensor(gen.token_ids)[:, None]).squeeze(-1)
    torch.testing.assert_close(gen.logprobs, expected, rtol=1e-3, atol=1e-3)


def test_batch_with_per_row_steering_equals_rows_alone(smollm):
    torch.manual_seed(1)
    d = smollm.arch.d_model
    per_row = [[AddVector(10, torch.randn(d), 6.0)], [], [MaskUnits(5, "head", torch.tensor([1.0] * 8 + [0.0]))]]
    batched = steerlab.generate(smollm, PROMPTS, per_row, max_new_tokens=16)
    alone = [steerlab.generate(smollm, [p], ivs, max_new_tokens=16)[0] for p, ivs in zip(PROMPTS, per_row)]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]


def test_matches_transformers_generate_greedy(smollm):
    tok = smollm.tokenizer
    ids = torch.tensor([smollm.encode(PROMPTS[0])])
    with torch.inference_mode():
        ref = smollm.hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id
        )
    ours = steerlab.generate(smollm, PROMPTS[:1], max_new_tokens=20)[0]
    assert ref[0, ids.shape[1] :].tolist()[: len(ours.token_ids)] == ours.token_ids


@pytest.mark.parametrize("alike", [False, True], ids=["per-row", "alike"])
def test_fast_paths_equal_the_plain_engine(smollm, monkeypatch, alike):
    """Packed decode matmuls and the shared-prefix prefill against the plain loop: same greedy tokens, close log-probs."""
    from steerlab.engine.options import EngineOptions

    torch.manual_seed(2)
    d = smollm.arch.d_model
    prompts = PROMPTS + ["Explain how to plant a tree.", "Explain how to bake bread."]
    vec = torch.randn(d) if alike else torch.randn(len(prompts), d)
    ivs = [AddVector(18, 6.0 * vec / vec.norm(dim=-1, keepdim=True))]
    plain = steerlab.generate(
        smollm, prompts, ivs, max_new_tokens=16, return_logprobs=True, engine_options=EngineOptions.plain()
    )
    fast = steerlab.generate(
        smollm, prompts, ivs, max_new_tokens=16, return_logprobs=True, engine_options=EngineOptions.fastest()
    )
    for a, b in zip(plain, fast):
        n = min(len(a.token_ids), len(b.token_ids))
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.logprobs[:n], b.logprobs[:n], rtol=1e-3, atol=1e-3)
