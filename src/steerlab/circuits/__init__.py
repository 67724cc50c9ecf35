"""Safety circuits: learned hard-concrete masks over attention heads and MLP neurons, ablation, tuning, organisms."""

from steerlab.circuits.ablation import circuit_interventions, gate_interventions, unit_means
from steerlab.circuits.find import FindConfig, FindResult, find_circuit
from steerlab.circuits.masks import UnitMasks
from steerlab.circuits.objectives import alignment_terms, backdoor_terms
from steerlab.circuits.tune import tune_circuit
from steerlab.circuits.units import Circuit, Unit, jaccard, random_circuit

__all__ = [
    "Circuit",
    "FindConfig",
    "FindResult",
    "Unit",
    "UnitMasks",
    "alignment_terms",
    "backdoor_terms",
    "circuit_interventions",
    "find_circuit",
    "gate_interventions",
    "jaccard",
    "random_circuit",
    "tune_circuit",
    "unit_means",
]
