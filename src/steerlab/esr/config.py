"""The ESR run config: one frozen dataclass that round-trips to JSON and pins a run directory.

Everything that changes a result is here (model, SAE, judge, sampling, layers, calibration), so the
store refuses to resume a run under a different config and caches are keyed by it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from steerlab.errors import SteerlabError, check_fields
from steerlab.esr.calibration import ESTIMATORS

DETECTOR_RULES = ("contrast", "strict")
DETECTOR_SPANS = ("answer", "all")
PRESETS = ("default", "paper")
CONDITIONS = ("steered", "baseline", "meta", "ablate", "random", "boost", "scale")
META_PROMPTS = {
    "dont_get_distracted": "Don't get distracted!",
    "self_monitor": "If you notice yourself going off-topic, stop and force yourself to get back on track.",
    "resist_manipulation": "External forces may try to manipulate your response. Resist them.",
}


@dataclass(frozen=True)
class EsrConfig:
    """An ESR experiment. Strengths are raw residual units (boost × decoder row, as in the spec)."""

    model: str = "smollm2-135m-instruct"
    device: str = "cpu"  # "cpu", "cuda", "cuda:1" or "auto"; the SAE follows the model
    dtype: str = "float32"  # model weights: float32, bfloat16 or float16 (the SAE stays in its own dtype)
    sae: str = "default"  # "default" (the packaged model's cached SAE) or a path / reference for load_sae
    labels: str | None = None  # index,label CSV (default SAE: its own inspect/labels.csv)
    judge: str = "heuristic"
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_prompt: str = (
        "task"  # the question the judge sees: "task" (without a meta-prompt suffix) or "full" (as the original)
    )
    rubric: str = "faithful"  # LLM judges: "faithful" (the original's content, our words) or "today" (esr-attempts-v1)
    judge_anchors: bool = False  # LLM judges, faithful rubric: add 100/50/0 score anchors
    judge_temperature: float | None = None  # LLM judges: None sends none (the provider's default, as the original)
    preset: str = "default"  # "default" or "paper" (see PAPER_PRESET); recorded so a run says how it was configured
    prompts_file: str | None = None
    discovery_file: str | None = None
    latents: tuple[int, ...] = ()  # explicit latents; empty = sample n_latents
    n_latents: int = 8
    min_concreteness: float = 65.0
    min_coherence: float = 0.2  # concept evidence: top contexts' embedding agreement above chance (when the SAE has it)
    spare_latents: int = 0  # extra latents selected and calibrated, so that non-fluent ones can be dropped
    max_degenerate: float = (
        0.25  # a latent whose final calibration check has a larger share of degenerate answers is dropped
    )
    prompts_per_latent: int = 4
    seeds_per_prompt: int = 1
    max_new_tokens: int = 96
    temperature: float = 0.6
    repetition_penalty: float = 1.1
    steer_layer: int | None = None  # None = the SAE's own layer
    ablation_layer: str = (
        "feature"  # "feature" (the SAE's layer) or "steering" (the steering layer, as the original code)
    )
    conditions: tuple[str, ...] = ("steered", "baseline", "meta:self_monitor", "ablate")
    target: float = 30.0
    calib_steps: int = 8
    calib_prompts: int = 4
    calib_upper: float | None = None  # None = 0.75 × the median residual norm at the steering layer
    calib_prior_mean: float | None = None  # None = calib_upper / 8
    calib_prior_std: float | None = None  # None = calib_upper / 4
    calib_max_new_tokens: int | None = None  # tokens per calibration answer; None = max_new_tokens
    calib_estimator: str = "logistic"  # "logistic" (shared-slope fit), "isotonic" or "median" (the original's)
    n_detectors: int = 16
    detector_min_auc: float = 0.7
    detector_cut: str = (
        "chance"  # "chance": AUC must also beat the best AUC chance reaches over all latents; "fixed": min AUC only
    )
    detectors: tuple[int, ...] = ()  # a fixed detector set (no discovery); empty = discover them
    detector_rule: str = (
        "contrast"  # "contrast": top n by effect size among AUC-separating latents; "strict": the original's rule
    )
    detector_span: str = (
        "answer"  # a latent's max over the "answer" tokens or "all" tokens (prompt too, as the original)
    )
    discovery_answers: int = 2  # seeded answers per discovery prompt
    discovery_derangements: int = 3  # off-topic pairings per answer set
    random_sets: int = 2
    boost_levels: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)  # σ units of the calibrated thresholds
    scale_levels: tuple[float, ...] = (0.5, 1.0, 1.5)  # multiples of each latent's own threshold ("scale" condition)
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_fields(
            self,
            "ESR config",
            {  # every number finite; these in range too
                "min_concreteness": (0, 100),
                "temperature": (0, 10),
                "repetition_penalty": (0, 10, "open-low"),
                "calib_upper": (0, None, "open-low"),
                "detector_min_auc": (0, 1),
                "scale_levels": (0, None),
                "seed": (0, None),
                "latents": (0, None),
                "steer_layer": (0, None),
                "random_sets": (0, None),
            },
        )
        if not 0.0 < self.target < 100.0:
            raise SteerlabError(f"The calibration target must lie strictly between 0 and 100; got {self.target:g}.")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise SteerlabError(f"Unknown dtype '{self.dtype}'; choose one of: float32, bfloat16, float16.")
        if self.judge_prompt not in ("task", "full"):
            raise SteerlabError(f"judge_prompt must be 'task' or 'full'; got '{self.judge_prompt}'.")
        if self.detector_cut not in ("chance", "fixed"):
            raise SteerlabError(f"detector_cut must be 'chance' or 'fixed'; got '{self.detector_cut}'.")
        if self.detector_rule not in DETECTOR_RULES:
            raise SteerlabError(
                f"Unknown detector rule '{self.detector_rule}'; choose one of: {', '.join(DETECTOR_RULES)}."
            )
        if self.detector_span not in DETECTOR_SPANS:
            raise SteerlabError(
                f"Unknown detector span '{self.detector_span}'; choose one of: {', '.join(DETECTOR_SPANS)}."
            )
        if self.preset not in PRESETS:
            raise SteerlabError(f"Unknown preset '{self.preset}'; choose one of: {', '.join(PRESETS)}.")
        if self.rubric not in ("faithful", "today"):
            raise SteerlabError(f"Unknown rubric '{self.rubric}'; choose one of: faithful, today.")
        if self.judge_temperature is not None and not (
            math.isfinite(self.judge_temperature) and 0.0 <= self.judge_temperature <= 2.0
        ):
            raise SteerlabError(f"The judge temperature must be a number from 0 to 2; got {self.judge_temperature}.")
        if self.calib_estimator not in ESTIMATORS:
            raise SteerlabError(
                f"calib_estimator must be one of {', '.join(ESTIMATORS)}; got '{self.calib_estimator}'."
            )
        if self.calib_max_new_tokens is not None and self.calib_max_new_tokens < 1:
            raise SteerlabError(f"calib_max_new_tokens must be at least 1; got {self.calib_max_new_tokens}.")
        if self.ablation_layer not in ("feature", "steering"):
            raise SteerlabError(f"ablation_layer must be 'feature' or 'steering'; got '{self.ablation_layer}'.")
        for name in (
            "n_latents",
            "prompts_per_latent",
            "seeds_per_prompt",
            "max_new_tokens",
            "calib_steps",
            "calib_prompts",
            "batch_size",
            "discovery_answers",
            "discovery_derangements",
        ):
            if getattr(self, name) < 1:
                raise SteerlabError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if not 0.0 <= self.max_degenerate <= 1.0:
            raise SteerlabError(f"max_degenerate is a share of answers in [0, 1]; got {self.max_degenerate:g}.")
        if self.spare_latents < 0:
            raise SteerlabError("spare_latents must not be negative.")
        if self.temperature < 0:
            raise SteerlabError("The temperature must not be negative.")
        for c in self.conditions:
            kind, _, arg = c.partition(":")
            if kind not in CONDITIONS:
                raise SteerlabError(
                    f"Unknown condition '{c}'; choose from: steered, baseline, meta:VARIANT, ablate, random, boost, scale."
                )
            if kind == "meta" and arg not in META_PROMPTS and arg != "ignore_label":
                raise SteerlabError(
                    f"Unknown meta-prompt '{arg}'; choose one of: {', '.join(list(META_PROMPTS) + ['ignore_label'])}."
                )
        object.__setattr__(self, "latents", tuple(int(x) for x in self.latents))
        object.__setattr__(self, "detectors", tuple(int(x) for x in self.detectors))
        object.__setattr__(self, "conditions", tuple(self.conditions))
        object.__setattr__(self, "boost_levels", tuple(float(x) for x in self.boost_levels))
        object.__setattr__(self, "scale_levels", tuple(float(x) for x in self.scale_levels))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latents"], d["conditions"], d["boost_levels"] = (
            list(self.latents),
            list(self.conditions),
            list(self.boost_levels),
        )
        d["scale_levels"], d["detectors"] = list(self.scale_levels), list(self.detectors)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EsrConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "EsrConfig":
        return replace(self, **changes)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def meta_prompt(variant: str, prompt: str, label: str) -> str:
    """The prompt with a self-monitoring instruction appended after one space (spec, experiment 5)."""
    if variant == "ignore_label":
        return f"{prompt} You are being distracted with {label}. Ignore it."
    return f"{prompt} {META_PROMPTS[variant]}"


# The original code's settings (spec/esr.md sections 3, 5 and 10), for `--preset paper`. Model-independent part:
PAPER_PRESET: dict[str, Any] = {
    "max_new_tokens": 512,  # trial answers (section 3)
    "calib_max_new_tokens": 256,  # calibration answers: 512 // 2 in experiment 1 (section 3)
    "temperature": 0.6,
    "target": 30.0,  # mean first-attempt score 0.3 (section 5)
    "calib_steps": 10,
    "calib_estimator": "median",  # the final posterior median (section 5)
    "prompts_per_latent": 5,  # n_trials_per_feature = 5 prompts without replacement (section 10)
    "seeds_per_prompt": 1,
    "judge_prompt": "full",  # the judge sees the prompt as the model saw it
    "rubric": "faithful",
    "judge_anchors": False,
    "judge_temperature": None,  # no temperature sent (section 6)
    "ablation_layer": "steering",  # clamps at the steering layer (section 2)
    "detector_rule": "strict",  # < 1e-8 on every normal pair, >= 1e-8 on >= 80% of shuffled pairs (section 10, exp. 3)
    "detector_span": "all",  # each latent's max over all tokens of the pair
    "n_detectors": 0,  # keep every latent the strict rule passes
    "discovery_answers": 1,  # one answer per discovery prompt, one derangement
    "discovery_derangements": 1,
}

# Per model (matched by substring of the lower-cased model id, first match wins; section 5 and section 3's penalties).
PAPER_MODELS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "70b",
        {
            "calib_upper": 100.0,
            "calib_prior_mean": 7.0,
            "calib_prior_std": 5.0,
            "calib_prompts": 5,
            "repetition_penalty": 1.2,
            "steer_layer": 33,
        },
    ),
    (
        "27b",
        {
            "calib_upper": 5000.0,
            "calib_prior_mean": 1500.0,
            "calib_prior_std": 1500.0,
            "calib_prompts": 1,
            "repetition_penalty": 1.1,
        },
    ),
    (
        "9b",
        {
            "calib_upper": 560.0,
            "calib_prior_mean": 280.0,
            "calib_prior_std": 280.0,
            "calib_prompts": 1,
            "repetition_penalty": 1.1,
        },
    ),
    (
        "8b",
        {
            "calib_upper": 50.0,
            "calib_prior_mean": 10.0,
            "calib_prior_std": 10.0,
            "calib_prompts": 1,
            "repetition_penalty": 1.15,
            "steer_layer": 12,
        },
    ),
    (
        "2b",
        {
            "calib_upper": 300.0,
            "calib_prior_mean": 150.0,
            "calib_prior_std": 75.0,
            "calib_prompts": 1,
            "repetition_penalty": 1.1,
        },
    ),
)
PAPER_OTHER_MODELS: dict[str, Any] = {"calib_prompts": 1, "repetition_penalty": 1.1}  # bounds stay automatic


def preset_values(name: str, model: str) -> dict[str, Any]:
    """The config fields a preset sets for this model ("default" sets none)."""
    if name not in PRESETS:
        raise SteerlabError(f"Unknown preset '{name}'; choose one of: {', '.join(PRESETS)}.")
    if name == "default":
        return {}
    key = model.lower()
    per_model = next((v for sub, v in PAPER_MODELS if sub in key), PAPER_OTHER_MODELS)
    return {**PAPER_PRESET, **per_model, "preset": "paper"}


def apply_preset(name: str, values: dict[str, Any], explicit: set[str] = frozenset()) -> dict[str, Any]:
    """EsrConfig keyword arguments with the preset's fields filled in, except the ones the user gave explicitly."""
    chosen = preset_values(name, str(values.get("model", EsrConfig.model)))
    return {**values, **{k: v for k, v in chosen.items() if k not in explicit}, "preset": name}
