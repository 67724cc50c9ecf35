"""The learning-rate schedule every trainer uses (SAE training, LoRA fine-tuning): warm up, then decay linearly."""

from __future__ import annotations


def warmup_decay(step: int, *, steps: int, warmup_steps: int, decay_start: int | None) -> float:
    """Learning-rate factor at an optimiser step (for torch's LambdaLR).

    Args:
        step: the optimiser step, from 0.
        steps: the run's total steps; the factor reaches 0 there.
        warmup_steps: the factor rises linearly, (step + 1) / warmup_steps, over this many steps (0: none).
        decay_start: from this step on the factor falls linearly to 0 at `steps`; None keeps it constant.

    Returns:
        warm-up factor x decay factor, each in [0, 1] (they multiply where the two windows overlap).
    """
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    if decay_start is None or step < decay_start:
        return warm
    return warm * max(0.0, (steps - step) / max(1, steps - decay_start))
