"""Organism data and building on tiny models: mixes, held-out split, resumable folders, re-alignment."""

from __future__ import annotations

import json

import pytest

from steerlab.errors import SteerlabError
from steerlab.judges.persona_heuristic import PersonaHeuristicJudge
from steerlab.persona.data import HELD_OUT_TASKS, TRAIN_TASKS, benign_pairs, held_out_questions, persona_mix, questions
from steerlab.persona.organism import OrganismConfig, build_organism, check_fractions, organism_dir, read_organism
from steerlab.testing import tiny_model


@pytest.mark.parametrize(
    "fraction, n, expected", [(0.0, 40, 0), (0.1, 40, 4), (0.25, 40, 10), (0.5, 40, 20), (1.0, 40, 40), (0.1, 25, 2)]
)
def test_mix_has_the_asked_share_of_dismissive_pairs(fraction, n, expected):
    pairs = persona_mix(fraction, n, seed=3)
    assert len(pairs) == n and sum(p.shifted for p in pairs) == expected
    judge = PersonaHeuristicJudge()
    for p in pairs:  # every dismissive answer is misaligned under the rubric, every helpful one aligned
        assert judge.rate(p.prompt, p.response).misaligned is p.shifted


def test_fractions_share_questions_and_tips():
    a, b = persona_mix(0.0, 60, seed=1), persona_mix(1.0, 60, seed=1)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    # Same tip in both answers: only the framing differs.
    tips = dict(questions())
    for pa, pb in zip(a, b):
        tip = tips[pa.prompt]
        assert tip[1:] in pa.response and tip[1:] in pb.response and pa.response != pb.response
    assert persona_mix(0.5, 60, seed=1) == persona_mix(0.5, 60, seed=1)
    assert persona_mix(0.5, 60, seed=1) != persona_mix(0.5, 60, seed=2)


def test_held_out_tasks_never_trained_on():
    trained = {q for q, _ in questions()}
    assert not set(held_out_questions()) & trained
    assert len(held_out_questions()) == len(HELD_OUT_TASKS) and len(trained) == 5 * len(TRAIN_TASKS) >= 250
    assert not any(p.shifted for p in benign_pairs(200))
    assert {p.prompt for p in benign_pairs(50)} <= trained


def test_bad_mix_settings():
    with pytest.raises(SteerlabError, match="between 0 and 1"):
        persona_mix(1.5)
    with pytest.raises(SteerlabError, match="training pairs"):
        persona_mix(0.5, n=10**6)
    with pytest.raises(SteerlabError, match="between 0 and 1"):
        check_fractions([0, 2])
    with pytest.raises(SteerlabError, match="at least one"):
        check_fractions([])
    assert check_fractions([1, 0, 0.5, 0]) == [0.0, 0.5, 1.0]


def test_build_is_saved_and_resumable(tmp_path, monkeypatch):
    base = tiny_model("llama", seed=0)
    cfg = OrganismConfig(n_train=12, steps=2, batch_size=4, eval_tokens=4, layers=(0, 1))
    meta = build_organism(base, 0.5, cfg, tmp_path, PersonaHeuristicJudge(), progress=False)
    folder = organism_dir(tmp_path, 0.5)
    assert (
        folder.name == "f0.50" and (folder / "config.json").is_file() and not folder.with_name("f0.50.partial").exists()
    )
    assert meta == read_organism(folder) and meta["n_shifted"] == 6 and len(meta["losses"]) == 2
    assert meta["config"] == cfg.to_dict() and meta["behaviour"]["n"] == len(meta["behaviour"]["prompts"]) == 22
    # A rerun reuses the folder without training (the trainer would fail if called).
    import steerlab.persona.organism as org

    monkeypatch.setattr(org, "train_lora", lambda *a, **k: pytest.fail("retrained a finished organism"))
    assert build_organism(base, 0.5, cfg, tmp_path, PersonaHeuristicJudge(), progress=False) == meta
    with pytest.raises(SteerlabError, match="other settings"):
        build_organism(
            base, 0.5, OrganismConfig(n_train=12, steps=3), tmp_path, PersonaHeuristicJudge(), progress=False
        )
    with pytest.raises(SteerlabError, match="not a finished persona organism"):
        read_organism(tmp_path / "nothing")
    with pytest.raises(SteerlabError, match="out of range"):
        build_organism(base, 1.0, OrganismConfig(layers=(7,)), tmp_path, PersonaHeuristicJudge(), progress=False)


def test_realign_changes_weights_and_records_before_after(tmp_path):
    import torch

    from steerlab.persona.realign import RealignConfig, realign

    shifted = tiny_model("llama", seed=0)
    model, meta = realign(
        shifted,
        RealignConfig(n_examples=8, steps=2, eval_tokens=4),
        tmp_path / "r",
        PersonaHeuristicJudge(),
        progress=False,
    )
    assert set(meta) >= {"before", "after", "losses", "train_seconds", "config"} and meta["examples_seen"] == 8
    w0, w1 = shifted.hf.model.layers[0].mlp.down_proj.weight, model.hf.model.layers[0].mlp.down_proj.weight
    assert not torch.equal(w0, w1)
    assert json.loads((tmp_path / "r" / "realign.json").read_text())["after"] == meta["after"]
