"""The one learning-rate schedule (SAE training and LoRA fine-tuning share it)."""

import pytest

from steerlab.schedule import warmup_decay


def test_warmup_then_constant_then_linear_decay_to_zero():
    factors = [warmup_decay(s, steps=10, warmup_steps=2, decay_start=6) for s in range(11)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_no_warmup_and_no_decay():
    assert [warmup_decay(s, steps=4, warmup_steps=0, decay_start=None) for s in range(5)] == [1.0] * 5


def test_decay_over_the_whole_run_multiplies_the_warmup():
    # LoRA's default: decay from step 0, so warm-up steps are scaled by the decay too
    assert warmup_decay(0, steps=10, warmup_steps=2, decay_start=0) == pytest.approx(0.5 * 1.0)
    assert warmup_decay(1, steps=10, warmup_steps=2, decay_start=0) == pytest.approx(1.0 * 0.9)
    assert warmup_decay(3, steps=10, warmup_steps=2, decay_start=0) == pytest.approx(0.7)


def test_the_sae_and_lora_trainers_keep_their_former_schedules():
    from steerlab.sae.train import TrainConfig, _lr_factor
    from steerlab.training.lora import LoraRecipe, _schedule

    cfg = TrainConfig(layer=0, n_tokens=64 * 40, batch_size=64, warmup_steps=5, decay_fraction=0.25)
    decay_start = int(cfg.steps * (1 - cfg.decay_fraction))
    former_sae = [
        (s + 1) / 5 if s < 5 else (max(0.0, (40 - s) / (40 - decay_start)) if s >= decay_start else 1.0)
        for s in range(41)
    ]
    assert [_lr_factor(s, cfg) for s in range(41)] == former_sae  # bit for bit
    for decay in (True, False):
        recipe = LoraRecipe(steps=30, warmup_steps=4, decay=decay)
        former_lora = [min(1.0, (s + 1) / 4) * (max(0.0, 1 - s / 30) if decay else 1.0) for s in range(31)]
        assert [_schedule(recipe)(s) for s in range(31)] == pytest.approx(former_lora, rel=1e-15, abs=0)
