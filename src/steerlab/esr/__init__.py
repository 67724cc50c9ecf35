"""Endogenous Steering Resistance (ESR): does a steered model notice it drifted off topic and correct itself?

`run_esr(EsrConfig(...), run_dir)` runs the whole loop (latent selection, calibration, detector
discovery, steered / baseline / meta-prompt / ablation / random-control / boost-sweep trials,
grading, metrics with CIs) resumably in one run directory; `write_report(run_dir)` renders it.
"""

from steerlab.esr.calibration import Bisection, CalibrationSettings, Threshold, ThresholdCache, calibrate
from steerlab.esr.config import EsrConfig, META_PROMPTS
from steerlab.esr.metrics import Estimate, Outcome, summarize, wilson
from steerlab.esr.prompts import DISCOVERY_PROMPTS, EVAL_PROMPTS, read_prompts
from steerlab.esr.runner import RunResult, run_esr

__all__ = [
    "Bisection", "CalibrationSettings", "DISCOVERY_PROMPTS", "EVAL_PROMPTS", "EsrConfig", "Estimate", "META_PROMPTS",
    "Outcome", "RunResult", "Threshold", "ThresholdCache", "calibrate", "read_prompts", "run_esr", "summarize", "wilson",
]
