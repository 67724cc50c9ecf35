"""Persona vectors on tiny models: the mean difference on the same tokens, steering split across layers, the study."""

from __future__ import annotations

import json

import pytest
import torch

from steerlab.judges.persona_heuristic import PersonaHeuristicJudge
from steerlab.persona.vector import layered_sweep, persona_vectors, random_directions, run_vector_study
from steerlab.testing import tiny_model

PROMPTS = ["How do I boil an egg?", "Name a colour."]


def _shifted(model, layer=1, scale=0.5):
    """A copy of the model whose layer-`layer` MLP output bias-like shift is known: add a constant to down_proj's output."""
    import copy

    tuned = copy.deepcopy(model)
    shift = torch.zeros(model.arch.d_model)
    shift[3] = scale
    down = tuned.arch.down_proj(layer)
    down.register_forward_hook(lambda m, a, out: out + shift)
    return tuned, shift


def test_persona_vector_recovers_a_known_residual_shift():
    base = tiny_model("llama")
    tuned, shift = _shifted(base, layer=1)
    vecs = persona_vectors(base, tuned, PROMPTS, [0, 1, 2], max_new_tokens=4)
    assert float(vecs[0].norm()) < 1e-6  # before the shift, nothing differs
    assert torch.allclose(vecs[1], shift, atol=1e-5)  # resid_post of layer 1 carries exactly the added constant
    assert float(vecs[2].norm()) > 0


def test_split_steering_adds_the_share_of_each_layer(monkeypatch):
    model = tiny_model("llama")
    dirs = random_directions(model, [0, 1], seed=0)
    seen = []
    import steerlab.persona.vector as vector

    real = vector.generate
    monkeypatch.setattr(
        vector, "generate", lambda m, prompts, ivs, **kw: seen.append(ivs) or real(m, prompts, ivs, **kw)
    )
    lv = layered_sweep(model, dirs, [0.0, 0.4], PROMPTS, PersonaHeuristicJudge(), split=True, max_new_tokens=3)
    ivs = seen[0]
    assert [iv.layer for iv in ivs] == [0, 1] and lv.split and len(lv.curve.points) == 2
    for iv in ivs:
        norm = lv.median_norms[iv.layer]
        assert torch.allclose(iv.strength, torch.tensor([0.0, 0.0, 0.4 * norm / 2, 0.4 * norm / 2]))
        assert float(iv.vector.norm()) == pytest.approx(1.0)


def test_study_writes_persona_and_random_rows(tmp_path):
    base = tiny_model("llama")
    tuned, _ = _shifted(base, layer=1)
    result = run_vector_study(
        base,
        tuned,
        PROMPTS,
        [[1], [1, 2]],
        [0.0, 0.2],
        PersonaHeuristicJudge(),
        mode="repair",
        max_new_tokens=3,
        out=tmp_path,
    )
    assert [(r["direction"], r["layers"]) for r in result["rows"]] == [
        ("persona vector", [1]),
        ("random", [1]),
        ("persona vector", [1, 2]),
        ("random", [1, 2]),
    ]
    assert (
        result["strengths"] == [-0.0, -0.2] and json.loads((tmp_path / "vector.json").read_text())["mode"] == "repair"
    )
    with pytest.raises(Exception, match="zero or not finite"):
        run_vector_study(base, tuned, PROMPTS, [[0]], [0.1], PersonaHeuristicJudge(), max_new_tokens=3)


def test_cli_bad_mode_and_layer_sets(run_cli):
    code, text = run_cli("persona", "vector", "x", "--base", "y", "--mode", "sideways")
    assert code == 2 and "Unknown mode" in text
    code, text = run_cli("persona", "vector", "x", "--base", "y", "--layer-sets", "a-b")
    assert code == 2 and "--layers must look like" in text


def test_a_repair_reports_the_lowest_in_budget_rate_and_the_random_rate_there(monkeypatch):
    """Planted curves: inducing picks the highest in-budget rate; repairing the lowest, at the weakest strength
    among ties, with the random direction's rate at that same strength beside it."""
    from steerlab.persona import vector as vector_mod
    from steerlab.persona.validate import SteerPoint, Validation

    rates = {"persona vector": [0.9, 0.3, 0.0, 0.0, 0.0], "random": [0.9, 0.8, 0.7, 0.2, 0.0]}
    incoherent = {"persona vector": [0.0, 0.0, 0.0, 0.05, 0.5], "random": [0.0] * 5}

    def planted(model, dirs, strengths, prompts, judge, *, label, **kw):
        points = [SteerPoint(s, s, rates[label][i], 20, incoherent[label][i], 50, 80) for i, s in enumerate(strengths)]
        return vector_mod.LayeredValidation(
            label, list(dirs), True, {}, Validation(-1, 1, "resid_post", "m", 1, points)
        )

    monkeypatch.setattr(vector_mod, "layered_sweep", planted)
    base = tiny_model("llama")
    tuned, _ = _shifted(base, layer=1)
    kw = dict(max_new_tokens=3)
    repair = run_vector_study(
        base, tuned, PROMPTS, [[1]], [0, 0.1, 0.2, 0.3, 0.4], PersonaHeuristicJudge(), mode="repair", **kw
    )
    best = repair["rows"][0]["best"]
    assert best["strength"] == -0.2 and best["misalignment_rate"] == 0.0 and best["random_at_strength"] == 0.7
    induce = run_vector_study(base, tuned, PROMPTS, [[1]], [0, 0.1, 0.2, 0.3, 0.4], PersonaHeuristicJudge(), **kw)
    assert induce["rows"][0]["best"]["strength"] == 0.0 and induce["rows"][0]["best"]["misalignment_rate"] == 0.9
