"""The benchmark's own logic (agreement, ratios against targets) and the engine's preallocated KV cache it measures."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from peer_report import agreement, report  # noqa: E402


def test_agreement_compares_up_to_the_first_eos_in_either_row():
    stops = {2}
    assert agreement([[5, 6, 7], [5, 6, 9]], [[5, 6, 2], [5, 6, 7]], stops) == 1  # row 0 equal up to EOS; row 1 differs
    # steerlab chose EOS where min_new_tokens forbade it to the reference: equal up to there.
    assert agreement([[5, 2, 9]], [[5, 198, 4]], stops) == 1
    assert agreement([[4, 2, 9]], [[5, 198, 4]], stops) == 0


def test_report_prints_ratios_and_misses(capsys):
    rows = [
        {"case": c, "batch": 8, "tok_s": r, "peak_mib": 900.0, "tokens": [[1]] * 8, "times": [8 * 32 / r] * 3}
        for c, r in [("nnsight", 100.0), ("steerlab_steered", 90.0), ("steerlab_unsteered", 92.0), ("hf_hook", 99.0)]
    ]
    report(rows, {"model": "m", "layer": 18, "new_tokens": 32, "repeats": 3, "batches": [8], "stop_ids": [2]}, 2)
    out = capsys.readouterr().out
    assert (
        "| steered vs nnsight (steerlab_steered / nnsight) | 8 | 0.90 | 0.90 | 0.90 | 0.90 | ≥ 1.0 | MISSED by 10% |"
        in out
    )
    assert (
        "steered vs own unsteered (steerlab_steered / steerlab_unsteered) | 8 | 0.98 | 0.98 | 0.98 | 0.98 | ≥ 0.97 | met"
        in out
    )
    assert "8/8 vs hf_hook" in out


def test_ratios_are_the_median_of_paired_repeats(capsys):
    """A slow spell in one repeat moves the best-time ratio but not the median of the per-repeat ratios."""
    rows = [
        {
            "case": "steerlab_steered",
            "batch": 32,
            "tok_s": 100.0,
            "peak_mib": 1.0,
            "tokens": [],
            "times": [1.0, 1.0, 5.0, 1.0, 1.0],
        },
        {
            "case": "full_forward",
            "batch": 32,
            "tok_s": 100.0,
            "peak_mib": 1.0,
            "tokens": [],
            "times": [0.5, 0.5, 1.0, 0.5, 0.4],
        },
    ]
    report(rows, {"model": "m", "layer": 18, "new_tokens": 32, "repeats": 5, "batches": [32], "stop_ids": []}, 2)
    out = capsys.readouterr().out
    assert (
        "| steered decode vs a plain full forward (steerlab_steered / full_forward) | 32 | 0.50 | 0.20 | 0.50 | 1.00 | ≥ 0.7 |"
        in out
    )


@pytest.mark.parametrize("capacity", [3, 1000])
def test_preallocated_cache_equals_the_growing_one(tiny_factory, monkeypatch, capacity):
    """Also when the batch outgrows the planned capacity (capacity 3 < prompt + new tokens)."""
    import importlib

    import torch

    import steerlab
    from steerlab.engine import kv_cache
    from steerlab.engine.options import EngineOptions

    engine = importlib.import_module("steerlab.engine.generate")  # the module (the package exports the function)

    model = tiny_factory("llama")
    prompts = ["How do you boil an egg?", "Hi", "Explain how to iron a shirt, step by step."]
    ivs = [steerlab.AddVector(1, torch.randn(3, model.arch.d_model), 2.0)]
    plain = steerlab.generate(
        model, prompts, ivs, max_new_tokens=12, return_logprobs=True, engine_options=EngineOptions(preallocate=False)
    )
    used = []

    def spy(cache, n):
        cache = kv_cache.preallocate(cache, capacity)
        used.append({type(layer).__name__ for layer in cache.layers})
        return cache

    monkeypatch.setattr(engine, "preallocate", spy)
    fast = steerlab.generate(
        model, prompts, ivs, max_new_tokens=12, return_logprobs=True, engine_options=EngineOptions(preallocate=True)
    )
    assert used == [{"PreallocatedLayer"}]
    for a, b in zip(plain, fast):
        assert a.token_ids == b.token_ids
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_phases_split_the_prefill_from_the_decode_steps(capsys):
    """Whole call 2 s, its first token alone 0.5 s: 1.5 s of decode steps for 32 x 31 tokens, set against the
    full forward's 32 x 32 tokens in 1 s (661.3 / 1024 tok/s = 0.65), paired per repeat."""

    def row(case, times):
        return {"case": case, "batch": 32, "tok_s": 1.0, "peak_mib": 1.0, "tokens": [], "times": times}

    rows = [
        row("steerlab_steered", [2.0, 2.0, 4.0]),
        row("steerlab_steered_prefill", [0.5, 0.5, 1.0]),
        row("full_forward", [1.0, 1.0, 2.0]),
    ]
    report(rows, {"model": "m", "layer": 18, "new_tokens": 32, "repeats": 3, "batches": [32], "stop_ids": []}, 2)
    out = capsys.readouterr().out
    assert "| steered | 32 | 0.500 | 25% | 661.3 | 0.65 | 0.65 | 0.65 |" in out
