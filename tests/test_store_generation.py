"""Generating a run's missing trials: an interrupted and resumed run equals an uninterrupted one."""

import torch

import steerlab
from steerlab.esr.batches import generate_missing
from steerlab.store import RunStore, Trial


def _trials():
    prompts = ["Fold a sheet.", "Boil an egg.", "Count to three.", "Name a colour."]
    return [
        Trial("steered" if s else "plain", p, seed=seed, strength=s)
        for p in prompts
        for s in (0.0, 30.0)
        for seed in (0, 1)
    ]


def _steer(vec):
    return lambda t: [steerlab.AddVector(1, vec, t.strength)] if t.strength else []


def test_resumed_run_equals_uninterrupted_run(tmp_path, tiny_factory):
    model = tiny_factory("llama")
    vec = torch.randn(64, generator=torch.Generator().manual_seed(0))
    kw = dict(max_new_tokens=6, temperature=0.8)

    whole = RunStore(tmp_path / "whole", {"exp": 1})
    whole.add_trials(_trials())
    assert generate_missing(whole, model, _steer(vec), batch_size=5, **kw) == 16

    part = RunStore(tmp_path / "part", {"exp": 1})
    part.add_trials(_trials())
    assert generate_missing(part, model, _steer(vec), batch_size=5, max_batches=2, **kw) == 10  # "killed" here
    part.close()
    resumed = RunStore(tmp_path / "part", {"exp": 1})
    resumed.add_trials(_trials())
    assert generate_missing(resumed, model, _steer(vec), batch_size=3, **kw) == 6  # only the missing ones
    assert generate_missing(resumed, model, _steer(vec), **kw) == 0

    for t in _trials():
        assert resumed.generation(t.key)["text"] == whole.generation(t.key)["text"]
    steered = [whole.generation(t.key)["text"] for t in _trials() if t.strength]
    plain = [whole.generation(t.key)["text"] for t in _trials() if not t.strength]
    assert steered != plain
