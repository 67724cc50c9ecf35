"""ESR generation on the vLLM backend: calibration batches and trial batches, the same interventions as the hf path."""

from __future__ import annotations

from typing import Any, Sequence

from steerlab.engine.vllm_backend import VllmBackend
from steerlab.esr.config import EsrConfig
from steerlab.esr.trials import trial_interventions
from steerlab.models.loading import Model
from steerlab.sae import Sae
from steerlab.store import Trial


class VllmTrialRunner:
    """One vLLM engine for a run's model; generates batches of trials with their per-row steering and ablation.

    Args:
        cfg: the run's config (token budget, temperature, repetition penalty, batch size, layers).
        model: the loaded steerlab model (its folder is what vLLM loads; it also encodes the prompts).
        sae: the run's SAE; engine: extra `vllm.LLM` keywords (e.g. kv_cache_memory_bytes).
    """

    def __init__(self, cfg: EsrConfig, model: Model, sae: Sae, **engine: Any):
        self.cfg, self.model, self.sae, self.engine = cfg, model, sae, engine
        self._backend: VllmBackend | None = None

    @property
    def backend(self) -> VllmBackend:
        """The engine, started on first use (a resumed run with nothing left to generate never starts one)."""
        if self._backend is None:
            dtype = str(self.model.dtype).removeprefix("torch.")
            self._backend = VllmBackend(
                str(self.model.hf.name_or_path), dtype=dtype, max_num_seqs=max(1, self.cfg.batch_size), **self.engine
            )
        return self._backend

    def generate(
        self, trials: Sequence[Trial], ablation: Sae | None = None, max_new_tokens: int | None = None
    ) -> list[tuple[list[int], str, str]]:
        """(token ids, text, finish reason) per trial, in batches of cfg.batch_size.

        ablation: the SAE that zero-clamps `ablate` latents (default: the run's); max_new_tokens: default cfg's.
        """
        cfg, out = self.cfg, []
        for start in range(0, len(trials), max(1, cfg.batch_size)):
            part = list(trials[start : start + max(1, cfg.batch_size)])
            ivs = trial_interventions(cfg, self.sae, part, ablation)
            out += self.backend.generate(
                [self.model.encode(t.prompt) for t in part],
                ivs,
                max_new_tokens=max_new_tokens or cfg.max_new_tokens,
                temperature=cfg.temperature,
                repetition_penalty=cfg.repetition_penalty,
                seeds=[t.seed for t in part],
                stop_token_ids=self.model.stop_token_ids,
            )
        return out

    def calibration_texts(self, trials: Sequence[Trial]) -> list[str]:
        """The texts of calibration trials (steering only, the SAE at its own layer as on the hf path)."""
        budget = self.cfg.calib_max_new_tokens or self.cfg.max_new_tokens
        return [text for _, text, _ in self.generate(trials, self.sae, budget)]

    def __call__(self, trials: Sequence[Trial]) -> list:
        """One batch of trials -> store rows (key, text, ids, finish reason, extra), as esr.batches.generate_trials."""
        return [
            (t.key, text, ids, reason, {"finish": reason, "backend": "vllm"})
            for t, (ids, text, reason) in zip(trials, self.generate(trials))
        ]
