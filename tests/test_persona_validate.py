"""Validation by steering on a tiny model: strength normalisation, strength 0 = no steering, grading plumbing."""

from __future__ import annotations

import pytest
import torch

from steerlab.engine.generate import generate
from steerlab.engine.scoring import trace
from steerlab.errors import SteerlabError
from steerlab.interventions.specs import Record
from steerlab.judges import PersonaGrade, PersonaJudge
from steerlab.persona.validate import SteerPoint, Validation, median_residual_norm, steer_sweep, steering_vector
from steerlab.sae import Sae, SaeConfig
from steerlab.testing import tiny_model

PROMPTS = ["hello there", "what is up?"]


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", seed=0)


@pytest.fixture(scope="module")
def sae():
    return Sae.random(SaeConfig(d_in=64, d_sae=32, layer=1, normalization="constant", input_scale=2.0), seed=3)


class ParityRater:
    """A deterministic stand-in for the persona judge: odd-length answers are 'misaligned', all coherent."""

    judge_id = "parity"

    def rate_many(self, pairs):
        return [PersonaGrade(alignment=0.0 if len(a) % 2 else 100.0, coherence=80.0) for _, a in pairs]


class ConstantBackend:
    """A chat back end that always answers the same rating (exercises the real PersonaJudge parsing)."""

    identity = "constant"

    def __init__(self, reply: str):
        self.reply = reply

    def complete(self, system: str, user: str) -> str:
        return self.reply


def test_steering_vector_is_unit_decoder_direction(sae):
    v = steering_vector(sae, 5)
    assert v.norm() == pytest.approx(1.0, abs=1e-6)
    assert torch.nn.functional.cosine_similarity(v, sae.W_dec[5].detach(), dim=0) == pytest.approx(1.0, abs=1e-6)


def test_median_norm_matches_trace(model):
    rows = trace(model, PROMPTS, [Record(layer=1, positions="all", name="x")], chat=True)
    expected = float(torch.cat([r["x"].norm(dim=-1) for r in rows]).median())
    assert median_residual_norm(model, PROMPTS, 1) == pytest.approx(expected, rel=1e-6)


def test_sweep_strength_units_and_zero_is_identity(model, sae):
    result = steer_sweep(model, sae, 5, [0.0, 0.5, 4.0], PROMPTS, ParityRater(), max_new_tokens=8)
    norm = median_residual_norm(model, PROMPTS, 1)
    assert result.median_norm == pytest.approx(norm, rel=1e-6)
    assert [p.absolute for p in result.points] == pytest.approx([0.0, 0.5 * norm, 4.0 * norm])
    plain = [g.text for g in generate(model, PROMPTS, max_new_tokens=8)]
    assert result.points[0].responses == plain
    assert result.points[2].responses != plain  # a strong push along the latent changes the answers
    for point in result.points:
        odd = sum(len(r) % 2 for r in point.responses) / len(point.responses)
        assert point.misalignment_rate == pytest.approx(odd) and point.n_rated == len(PROMPTS)
        assert point.incoherent_rate == 0.0 and point.mean_coherence == 80.0
    assert result.judge == "parity" and result.to_dict()["points"][1]["strength"] == 0.5


def test_sweep_with_persona_judge_and_samples(model, sae):
    judge = PersonaJudge(ConstantBackend("20"), concurrency=1)
    result = steer_sweep(
        model,
        sae,
        1,
        [-1.0, 1.0],
        PROMPTS,
        judge,
        median_norm=2.0,
        samples=2,
        max_new_tokens=4,
        temperature=1.0,
        seed=7,
    )
    for point in result.points:
        # Alignment 20 but coherence 20 too: rated, incoherent, so not counted as misaligned.
        assert point.n_rated == 4 and point.misalignment_rate == 0.0
        assert point.incoherent_rate == 1.0 and point.mean_alignment == 20.0 and len(point.responses) == 4
    assert result.points[0].absolute == -2.0 and result.median_norm == 2.0


def test_best_respects_incoherence_budget():
    pts = [
        SteerPoint(0.0, 0.0, 0.0, 10, 0.0, 90, 90),
        SteerPoint(0.4, 1.0, 0.3, 10, 0.05, 50, 80),
        SteerPoint(0.8, 2.0, 0.6, 10, 0.4, 30, 40),
    ]
    val = Validation(latent=3, layer=1, site="resid_post", model="m", median_norm=2.5, points=pts)
    assert val.best(0.1).strength == 0.4 and val.best(0.5).strength == 0.8
    assert val.causes_shift(0.1, min_increase=0.2) and not val.causes_shift(0.1, min_increase=0.5)
    assert val.best(0.0).strength == 0.0


def test_bad_input(model, sae):
    with pytest.raises(SteerlabError, match="empty"):
        steer_sweep(model, sae, 1, [1.0], [], ParityRater())
    with pytest.raises(SteerlabError, match="strength"):
        steer_sweep(model, sae, 1, [], PROMPTS, ParityRater())
    with pytest.raises(SteerlabError, match="out of range"):
        steer_sweep(model, sae, 99, [1.0], PROMPTS, ParityRater())
    with pytest.raises(SteerlabError, match="width 32"):
        steer_sweep(model, Sae.random(SaeConfig(d_in=32, d_sae=8, layer=1)), 1, [1.0], PROMPTS, ParityRater())
