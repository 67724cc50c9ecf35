"""Interventions are data: JSON round trips, fingerprints, batch checks, positions and clear errors."""

import json

import pytest
import torch

from steerlab import (
    AblateLatents,
    AddVector,
    ClampLatents,
    MaskUnits,
    Record,
    Sae,
    SaeConfig,
    Span,
    SteerlabError,
    SteerLatent,
)
from steerlab.interventions import apply, from_dict
from steerlab.interventions.positions import position_mask


@pytest.fixture()
def sae():
    return Sae.random(SaeConfig(d_in=64, d_sae=16, layer=1), seed=0)


def test_json_round_trip_of_every_intervention(sae):
    items = [
        AddVector(1, torch.arange(4.0), 2.5, positions=Span(-1, 0, anchor="prompt_end"), label="joy"),
        SteerLatent(sae, torch.tensor([1, 2]), torch.tensor([3.0, 4.0])),
        ClampLatents(sae, [[1, 2], [3]], 5.0, positions="generated"),
        AblateLatents(sae, [4, 5]),
        MaskUnits(0, "head", torch.tensor([1.0, 0.0])),
        Record(1, "resid_pre", sae=sae, latents=[1, 2]),
    ]
    for iv in items:
        text = iv.to_json()
        back = from_dict(json.loads(text), resolve_sae=lambda source: sae)
        assert back.to_json() == text
        assert back.fingerprint() == iv.fingerprint()


def test_fingerprint_changes_with_any_field():
    a = AddVector(1, torch.ones(4), 1.0)
    assert a.fingerprint() != AddVector(1, torch.ones(4), 1.5).fingerprint()
    assert a.fingerprint() != AddVector(2, torch.ones(4), 1.0).fingerprint()
    assert a.fingerprint() != AddVector(1, torch.ones(4), 1.0, positions="prompt").fingerprint()


def test_rows_selects_per_row_fields(sae):
    iv = AddVector(1, torch.randn(3, 4), torch.tensor([1.0, 2.0, 3.0]))
    picked = iv.rows([2, 0])
    assert picked.strength.tolist() == [3.0, 1.0]
    assert torch.equal(picked.vector, iv.vector[[2, 0]])
    clamp = ClampLatents(sae, [[1], [2], [3]], torch.tensor([1.0, 2.0, 3.0]))
    assert clamp.rows([1]).latents == ((2,),)


def test_bad_inputs_raise_one_sentence(tiny_factory, sae):
    model = tiny_factory("llama")
    with pytest.raises(SteerlabError, match="out of range"):
        with apply(model, [AddVector(7, torch.ones(64))]):
            pass
    with pytest.raises(SteerlabError, match="width 10"):
        with apply(model, [AddVector(1, torch.ones(10))]):
            pass
    with pytest.raises(SteerlabError, match="Latent 99 is out of range"):
        SteerLatent(sae, 99)
    with pytest.raises(SteerlabError, match="batch size"):
        AddVector(1, torch.ones(3, 64), torch.ones(2)).batch_size
    with pytest.raises(SteerlabError, match="positions"):
        AddVector(1, torch.ones(64), positions="middle")
    with pytest.raises(SteerlabError, match="mask has 3"):
        with apply(model, [MaskUnits(1, "head", torch.ones(3))]):
            pass


def test_hooks_are_removed_even_on_exceptions(tiny_factory):
    model = tiny_factory("llama")
    layer = model.arch.layers[1]
    before = len(layer._forward_hooks)
    with pytest.raises(RuntimeError):
        with apply(model, [AddVector(1, torch.ones(64))]):
            assert len(layer._forward_hooks) == before + 1
            raise RuntimeError("boom")
    assert len(layer._forward_hooks) == before


def test_position_masks_never_select_padding():
    positions = torch.tensor([[-1, -1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]])
    plen = torch.tensor([3, 4])
    assert position_mask("all", positions, plen).tolist() == [[False, False, True, True, True, True], [True] * 6]
    assert position_mask("prompt", positions, plen).tolist()[0] == [False, False, True, True, True, False]
    assert position_mask("generated", positions, plen).tolist()[1] == [False] * 4 + [True, True]
    last_prompt = Span(-1, 0, anchor="prompt_end")
    assert position_mask(last_prompt, positions, plen).tolist() == [
        [False, False, False, False, True, False],
        [False, False, False, True, False, False],
    ]


def test_per_row_lists_become_one_batched_set(tiny_factory, sae):
    from steerlab.interventions import batch_per_row

    merged = batch_per_row([[AddVector(1, torch.ones(64), 2.0)], [], [AblateLatents(sae, [1, 2])]])
    assert merged[0].strength.tolist() == [2.0, 0.0, 0.0]
    assert merged[1].latents == ((), (), (1, 2))


def test_steer_grammar_reads_vector_files_through_the_callers_loader(tmp_path, tiny_factory):
    """interventions sits below vectors: a vector= spec is read by the loader the caller passes, never imported here."""
    from steerlab.errors import SteerlabError
    from steerlab.interventions.parse import build_intervention, parse_steer
    from steerlab.vectors.concept import ConceptVector

    model = tiny_factory("llama")
    path = ConceptVector(torch.ones(model.arch.d_model), layer=1, site="resid_pre").save(tmp_path / "joy.safetensors")
    spec = parse_steer(f"vector={path},strength=3")
    with pytest.raises(SteerlabError, match="no vector loader"):
        build_intervention(spec, model)
    iv = build_intervention(spec, model, load_vector=ConceptVector.load)
    assert (iv.layer, iv.site, iv.strength, iv.label) == (1, "resid_pre", 3.0, "joy")
    assert torch.equal(iv.vector, torch.ones(model.arch.d_model))
