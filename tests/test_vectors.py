"""Concept vectors: mean difference and PCA agree with a hand computation; files round-trip."""

import torch

import steerlab
from steerlab import Record, Span
from steerlab.vectors import ConceptVector, train_vector


def test_mean_difference_matches_hand_computation(tiny_factory):
    model = tiny_factory("llama")
    pos, neg = ["the sea", "waves"], ["the desert", "sand"]
    cv = train_vector(model, pos, neg, layer=1)
    last = Span(-1, 0, anchor="prompt_end")
    acts = lambda ps: torch.stack(
        [r["a"][0] for r in steerlab.trace(model, ps, [Record(1, positions=last, name="a")], chat=None)]
    )
    torch.testing.assert_close(cv.vector, acts(pos).mean(0) - acts(neg).mean(0))


def test_pca_direction_agrees_in_sign_with_mean_difference(tiny_factory):
    model = tiny_factory("llama")
    pos, neg = ["the sea", "waves", "tides"], ["the desert", "sand", "dunes"]
    md = train_vector(model, pos, neg, layer=1)
    pca = train_vector(model, pos, neg, layer=1, method="pca")
    assert torch.dot(md.vector, pca.vector) > 0


def test_save_and_load_round_trip(tmp_path):
    cv = ConceptVector(torch.randn(8), layer=3, site="resid_pre", method="pca", model="m", meta={"label": "x"})
    back = ConceptVector.load(cv.save(tmp_path / "v.safetensors"))
    assert (
        torch.equal(back.vector, cv.vector)
        and back.layer == 3
        and back.site == "resid_pre"
        and back.meta == {"label": "x"}
    )
    add = back.steer(2.0)
    assert add.layer == 3 and add.site == "resid_pre" and float(add.strength) == 2.0
