"""Endogenous Steering Resistance (ESR): does a steered model notice it drifted off topic and correct itself?

`run_esr(EsrConfig(...), run_dir)` runs the whole loop (latent selection, calibration, detector
discovery, steered / baseline / meta-prompt / ablation / random-control / boost-sweep trials,
grading, metrics with CIs) resumably in one run directory; `write_report(run_dir)` renders it.
`organism_for_run(cfg, res, out)` builds the known positive (a self-correcting LoRA organism).
"""

from steerlab.esr.calibration import Bisection, CalibrationSettings, Threshold, ThresholdCache, calibrate
from steerlab.esr.config import META_PROMPTS, EsrConfig
from steerlab.esr.fluency import degeneration
from steerlab.esr.metrics import Estimate, Outcome, summarize, wilson
from steerlab.esr.organism import OrganismConfig, build_organism, load_organism, organism_for_run
from steerlab.esr.prompts import DISCOVERY_PROMPTS, EVAL_PROMPTS, read_prompts
from steerlab.esr.runner import RunResult, run_esr

__all__ = [
    "Bisection",
    "CalibrationSettings",
    "DISCOVERY_PROMPTS",
    "EVAL_PROMPTS",
    "EsrConfig",
    "Estimate",
    "META_PROMPTS",
    "OrganismConfig",
    "Outcome",
    "RunResult",
    "Threshold",
    "ThresholdCache",
    "build_organism",
    "calibrate",
    "degeneration",
    "load_organism",
    "organism_for_run",
    "read_prompts",
    "run_esr",
    "summarize",
    "wilson",
]
