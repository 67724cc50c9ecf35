"""Interventions as data, and the one context manager that installs them as hooks."""

from steerlab.interventions.hooks import Session, apply, batch_per_row
from steerlab.interventions.positions import Span
from steerlab.interventions.specs import (
    AblateLatents,
    AddVector,
    ClampLatents,
    Intervention,
    MaskUnits,
    Record,
    SteerLatent,
    from_dict,
)

__all__ = [
    "AblateLatents",
    "AddVector",
    "ClampLatents",
    "Intervention",
    "MaskUnits",
    "Record",
    "SteerLatent",
    "Session",
    "Span",
    "apply",
    "batch_per_row",
    "from_dict",
]
