"""The CLI's readable steering syntax: comma-separated key=value pairs, one --steer per intervention.

  vector=joy.safetensors,strength=6            add a saved concept vector (layer/site from the file)
  vector=joy.safetensors,layer=12,strength=6   ... at another layer
  sae=PATH,latent=1234,strength=40             add an SAE latent's decoder direction
  sae=PATH,ablate=12+40+77                     zero-ablate latents (error term kept)
  sae=PATH,clamp=12+40,value=5                 clamp latents to a value
  mask=head,layer=3,units=0+5                  zero heads (or neurons: mask=neuron)
Optional everywhere: positions=all|prompt|generated, site=resid_post|resid_pre|attn_out|mlp_out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch

from steerlab.errors import SteerlabError
from steerlab.interventions.positions import check_positions
from steerlab.interventions.specs import AblateLatents, AddVector, ClampLatents, Intervention, MaskUnits, SteerLatent
from steerlab.models.arch import SITES
from steerlab.models.loading import Model
from steerlab.sae.core import Sae

_KEYS = {
    "vector",
    "layer",
    "site",
    "strength",
    "positions",
    "sae",
    "latent",
    "ablate",
    "clamp",
    "value",
    "mask",
    "units",
}


@dataclass(frozen=True)
class SteerSpec:
    """A parsed --steer string, checked for form (not yet against a model)."""

    text: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if "vector" in self.fields:
            return "vector"
        if "mask" in self.fields:
            return "mask"
        for key in ("latent", "ablate", "clamp"):
            if key in self.fields:
                return key
        raise AssertionError


def _number(spec: str, key: str, value: str, cast=float):
    try:
        number = cast(value)
    except ValueError:
        raise SteerlabError(
            f"In --steer '{spec}', {key}={value} is not a {'number' if cast is float else 'whole number'}."
        ) from None
    if cast is float and not math.isfinite(number):
        raise SteerlabError(f"In --steer '{spec}', {key}={value} is not a finite number.")
    return number


def _id_list(spec: str, key: str, value: str) -> list[int]:
    return [_number(spec, key, part, int) for part in value.split("+") if part]


def parse_steer(text: str) -> SteerSpec:
    """Check a --steer string's form; raises one sentence on malformed input."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        if "=" not in part:
            raise SteerlabError(
                f"Malformed --steer '{text}': '{part}' is not key=value (e.g. vector=joy.safetensors,strength=4)."
            )
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in _KEYS:
            raise SteerlabError(
                f"Malformed --steer '{text}': unknown key '{key}'; known keys: {', '.join(sorted(_KEYS))}."
            )
        if not value:
            raise SteerlabError(f"Malformed --steer '{text}': '{key}' has no value.")
        fields[key] = value
    spec = SteerSpec(text, fields)
    kinds = [k for k in ("vector", "latent", "ablate", "clamp", "mask") if k in fields]
    if len(kinds) != 1:
        raise SteerlabError(
            f"Malformed --steer '{text}': give exactly one of vector=, latent=, ablate=, clamp= or mask=."
        )
    if kinds[0] in ("latent", "ablate", "clamp") and "sae" not in fields:
        raise SteerlabError(f"Malformed --steer '{text}': {kinds[0]}= needs sae=PATH.")
    if kinds[0] == "mask" and ("layer" not in fields or "units" not in fields):
        raise SteerlabError(f"Malformed --steer '{text}': mask= needs layer= and units=.")
    if kinds[0] == "mask" and fields["mask"] not in ("head", "neuron"):
        raise SteerlabError(f"Malformed --steer '{text}': mask= must be head or neuron.")
    if "strength" in fields:
        _number(text, "strength", fields["strength"])
    if "value" in fields:
        _number(text, "value", fields["value"])
    if "layer" in fields:
        _number(text, "layer", fields["layer"], int)
    for key in ("latent", "ablate", "clamp", "units"):
        if key in fields:
            _id_list(text, key, fields[key])
    if "site" in fields and fields["site"] not in SITES:
        raise SteerlabError(
            f"Malformed --steer '{text}': unknown site '{fields['site']}'; choose one of {', '.join(SITES)}."
        )
    if "positions" in fields:
        check_positions(fields["positions"])
    for key in ("vector", "sae"):
        if key in fields and _is_local_path(fields[key]) and not Path(fields[key]).expanduser().exists():
            raise SteerlabError(f"In --steer '{text}', {key} file {fields[key]} does not exist.")
    return spec


def _is_local_path(ref: str) -> bool:
    """SAE references may also be hf://ORG/REPO/PATH or RELEASE:SAE_ID (see steerlab.sae.load_sae)."""
    return not ref.startswith("hf://") and (":" not in ref or ref.startswith(("/", ".", "~")))


class VectorFile(Protocol):
    """What a vector= file gives: a direction, and the layer and site it was made at (e.g. vectors.ConceptVector)."""

    vector: torch.Tensor
    layer: int
    site: str


def build_intervention(
    spec: SteerSpec,
    model: Model,
    load_sae: Callable[[str], Sae] | None = None,
    load_vector: Callable[[str], VectorFile] | None = None,
) -> Intervention:
    """Turn a parsed spec into an intervention for this model (reads the vector or SAE file).

    Args:
        spec: a parsed --steer string (`parse_steer`).
        model: the model it will steer (layer and unit ranges are checked against it).
        load_sae: reads sae= references (default: `steerlab.sae.load_sae`).
        load_vector: reads vector= files; the vectors layer sits above this one, so the caller passes it
            (the CLI passes `steerlab.vectors.concept.ConceptVector.load`).

    Returns:
        The intervention the spec describes.
    """
    f = spec.fields
    positions = f.get("positions", "all")
    strength = float(f.get("strength", 1.0))
    if spec.kind == "vector":
        if load_vector is None:
            raise SteerlabError(
                f"--steer '{spec.text}' names a vector file, but no vector loader was given; pass "
                "load_vector=steerlab.vectors.concept.ConceptVector.load to build_intervention."
            )
        cv = load_vector(f["vector"])
        layer = int(f["layer"]) if "layer" in f else cv.layer
        if layer < 0:
            raise SteerlabError(f"Vector file {f['vector']} names no layer; add layer= to --steer '{spec.text}'.")
        return AddVector(
            layer, cv.vector, strength, site=f.get("site", cv.site), positions=positions, label=Path(f["vector"]).stem
        )
    if spec.kind == "mask":
        layer = model.arch.check_layer(int(f["layer"]))
        n = model.arch.n_units(f["mask"])
        mask = torch.ones(n)
        for unit in _id_list(spec.text, "units", f["units"]):
            if not 0 <= unit < n:
                raise SteerlabError(
                    f"In --steer '{spec.text}', {f['mask']} {unit} is out of range: layer {layer} has {n}."
                )
            mask[unit] = 0.0
        return MaskUnits(layer, f["mask"], mask, positions=positions)
    if load_sae is None:
        from steerlab.sae import load_sae
    sae = load_sae(f["sae"])
    if spec.kind == "latent":
        latents = _id_list(spec.text, "latent", f["latent"])
        if len(latents) != 1:
            raise SteerlabError(f"--steer '{spec.text}': latent= takes one latent; use one --steer per latent.")
        layer = int(f["layer"]) if "layer" in f else None
        return SteerLatent(sae, latents[0], strength, layer=layer, site=f.get("site"), positions=positions)
    if spec.kind == "ablate":
        return AblateLatents(sae, _id_list(spec.text, "ablate", f["ablate"]), positions=positions)
    return ClampLatents(sae, _id_list(spec.text, "clamp", f["clamp"]), float(f.get("value", 0.0)), positions=positions)
