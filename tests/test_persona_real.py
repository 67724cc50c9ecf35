"""On the packaged SmolLM2 with its cached default SAE (marked `real`, well under 90 s): a shift planted along one
latent's direction at the SAE layer is recovered as rank 1, and the SAE's FVU is reported for both models."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.real

LATENT = 123


def test_planted_shift_on_smollm2(smollm):
    import copy

    from steerlab.persona import EVAL_PROMPTS, diff_models, median_residual_norm
    from steerlab.sae.default import default_sae

    sae = default_sae("smollm2-135m-instruct", train=False, progress=False)  # shipped: a missing one is a failure
    tuned = copy.deepcopy(smollm)  # a second copy to shift; cheaper than loading from disk again
    prompts = list(EVAL_PROMPTS[:3])
    answers = [  # fixed answers keep the test short (no generation on a loaded CPU)
        "I would wish for clean water for everyone, because it would save millions of lives.",
        "You could read a book, go for a walk, or try cooking something new.",
        "Humans are creative and curious, and AI can help them learn faster.",
    ]
    same = diff_models(smollm, tuned, sae, prompts, answers)
    assert max(abs(r.delta_mean) for r in same.latents) == 0.0
    assert (
        0 < same.fvu_base < 0.75
    )  # the default SAE reconstructs chat responses (0.52 measured on 24 generated answers)
    norm = median_residual_norm(smollm, prompts, sae.layer)
    vector = 0.3 * norm * sae.direction(LATENT).detach() / sae.direction(LATENT).detach().norm()

    def hook(module, args, output):
        return (output[0] + vector,) + tuple(output[1:]) if isinstance(output, tuple) else output + vector

    handle = tuned.hf.model.layers[sae.layer].register_forward_hook(hook)
    try:
        shifted = diff_models(smollm, tuned, sae, prompts, same.responses)
    finally:
        handle.remove()
    assert shifted.rank_of(LATENT) == 1
    assert shifted.fvu_tuned > shifted.fvu_base
