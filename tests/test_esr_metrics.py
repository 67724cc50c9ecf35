"""ESR metrics and CIs against hand-computed values; prompts and config validation."""

import math

import pytest

from steerlab.errors import SteerlabError
from steerlab.esr.config import EsrConfig, meta_prompt
from steerlab.esr.metrics import (
    Outcome,
    cluster_bootstrap,
    esr_rate,
    increase_factor,
    is_degraded,
    mcnemar_exact,
    mean_ci,
    multi_attempt_rate,
    paired_comparison,
    relative_reduction,
    summarize,
    wilson,
)
from steerlab.esr.prompts import DISCOVERY_PROMPTS, EVAL_PROMPTS, check_prompts, read_prompts


def test_wilson_hand_computed():
    # 5/10: centre 0.5, half = 1.96*sqrt(0.025 + 1.96^2/400)/(1 + 1.96^2/10)
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5) and hi == pytest.approx(0.763407, abs=1e-5)
    # 0/10: lower bound 0, upper z^2/n / (1 + z^2/n)
    lo, hi = wilson(0, 10)
    z2 = 1.959963984540054**2
    assert lo == 0.0 and hi == pytest.approx((z2 / 10) / (1 + z2 / 10), abs=1e-9)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(10, 10)[0] == pytest.approx(1 - hi, abs=1e-9)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_mean_ci_t_interval():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0, 4.0])
    # sd = sqrt(5/3), t(0.975, 3) = 3.182446
    half = 3.182446305 * math.sqrt(5 / 3) / 2
    assert m == 2.5 and lo == pytest.approx(2.5 - half, abs=1e-6) and hi == pytest.approx(2.5 + half, abs=1e-6)
    assert mean_ci([7.0]) == (7.0, None, None)


def test_mean_ci_stays_inside_the_scale():
    # scores 0, 0, 0, 100: mean 25, sd 50, t(0.975, 3) = 3.182 -> 25 ± 79.6 = [-54.6, 104.6] before clipping
    m, lo, hi = mean_ci([0.0, 0.0, 0.0, 100.0])
    assert lo == pytest.approx(-54.6, abs=0.1) and hi == pytest.approx(104.6, abs=0.1)
    m, lo, hi = mean_ci([0.0, 0.0, 0.0, 100.0], bounds=(0.0, 100.0))
    assert (m, lo, hi) == (25.0, 0.0, 100.0)


def _outcomes():
    # latent 1: an ESR episode (10 -> 60), a single attempt; latent 2: a worsening restart (50 -> 20), a single attempt
    return [Outcome(2, 10, 60, 1), Outcome(1, 30, 30, 1), Outcome(3, 50, 20, 2), Outcome(1, 40, 40, 2)]


def test_summarize_hand_computed():
    s = summarize(_outcomes(), n_boot=200)
    assert s["multi_attempt_rate"].value == 0.5 and s["multi_attempt_rate"].n == 4
    assert s["esr_rate"].value == 0.25
    assert s["improvement_rate"].value == 0.5 and s["improvement_rate"].n == 2
    assert s["mean_score_improvement"].value == pytest.approx((50 - 30) / 2)
    assert s["first_score"].value == pytest.approx((10 + 30 + 50 + 40) / 4)
    assert s["mean_attempts"].value == pytest.approx(7 / 4)
    lo, hi = wilson(1, 4)
    assert s["esr_rate"].lo == pytest.approx(lo) and s["esr_rate"].hi == pytest.approx(hi)
    # min_delta: the +50 episode survives Δ > 25, not Δ > 50
    assert esr_rate(_outcomes(), 25) == 0.25 and esr_rate(_outcomes(), 50) == 0.0


def test_cluster_bootstrap_resamples_latents():
    # two latents: one always multi-attempt, one never. Resampled latent sets give rates 0, 0.5 or 1 only.
    o = [Outcome(2, 0, 50, "a")] * 3 + [Outcome(1, 50, 50, "b")] * 3
    lo, hi = cluster_bootstrap(o, multi_attempt_rate, n_boot=500, seed=1)
    assert lo == 0.0 and hi == 1.0
    assert cluster_bootstrap([Outcome(1, 0, 0, "a")] * 5, multi_attempt_rate) == (None, None)  # one cluster: undefined


def test_ratios_and_mcnemar():
    assert relative_reduction(0.074, 0.055) == pytest.approx(25.6756, abs=1e-3)
    assert increase_factor(0.074, 0.317) == pytest.approx(4.28378, abs=1e-4)
    assert relative_reduction(0.0, 0.1) is None and increase_factor(None, 0.1) is None
    # b=0, c=5: p = 2 * (1/32)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # b=1, c=4: 2 * (1 + 5)/32
    assert mcnemar_exact(1, 4) == pytest.approx(12 / 32)


def test_paired_comparison_counts():
    base = {(1, 0): Outcome(2, 0, 50, 1), (1, 1): Outcome(1, 50, 50, 1), (2, 0): Outcome(2, 10, 40, 2)}
    cond = {
        (1, 0): Outcome(1, 40, 40, 1),
        (1, 1): Outcome(1, 50, 50, 1),
        (2, 0): Outcome(2, 10, 40, 2),
        (9, 9): Outcome(1, 0, 0, 9),
    }
    p = paired_comparison(base, cond, n_boot=100)
    assert p["n_pairs"] == 3 and p["base_only"] == 1 and p["cond_only"] == 0
    assert p["difference"] == pytest.approx(-1 / 3)
    assert p["mcnemar_p"] == 1.0


def test_degraded_rule():
    assert is_degraded("go go go go go now")
    assert not is_degraded("a a a a a a")  # single characters do not count
    assert not is_degraded("go go go go stop go")


def test_prompt_sets_are_valid_and_disjoint():
    assert len(EVAL_PROMPTS) >= 38 and len(set(EVAL_PROMPTS)) == len(EVAL_PROMPTS)
    assert not set(EVAL_PROMPTS) & set(DISCOVERY_PROMPTS)
    assert all(p.startswith(("Explain how", "How do you")) for p in EVAL_PROMPTS)


def test_bad_prompt_files(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("How do you boil an egg?\n\nHow do you fry an egg?\n")
    with pytest.raises(SteerlabError, match="blank"):
        read_prompts(f)
    f.write_text("How do you boil an egg?\nHow do you boil an egg?\n")
    with pytest.raises(SteerlabError, match="duplicates prompt 1"):
        read_prompts(f)
    f.write_text("How do you boil an egg?\nHow do you fry an egg?\n")
    assert read_prompts(f) == ["How do you boil an egg?", "How do you fry an egg?"]
    with pytest.raises(SteerlabError):
        check_prompts([])


@pytest.mark.parametrize("target", [0, 100, -5, 130])
def test_target_outside_range(target):
    with pytest.raises(SteerlabError, match="strictly between 0 and 100"):
        EsrConfig(target=target)


def test_config_round_trip_and_conditions():
    cfg = EsrConfig(latents=(3, 4), conditions=("steered", "meta:self_monitor"))
    assert EsrConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SteerlabError, match="Unknown condition"):
        EsrConfig(conditions=("nonsense",))
    with pytest.raises(SteerlabError, match="ablation_layer"):
        EsrConfig(ablation_layer="middle")
    assert meta_prompt("self_monitor", "How do you X?", "cats").startswith("How do you X? If you notice yourself")
    assert "distracted with cats" in meta_prompt("ignore_label", "How do you X?", "cats")


def test_device_and_dtype_are_part_of_the_config():
    cfg = EsrConfig(dtype="bfloat16", device="auto")
    assert EsrConfig.from_dict(cfg.to_dict()) == cfg and cfg.digest() != EsrConfig().digest()
    with pytest.raises(SteerlabError, match="Unknown dtype"):
        EsrConfig(dtype="int3")
