"""SAELens folders: `cfg.json` + `sae_weights.safetensors` (W_enc [d_in,d_sae], W_dec [d_sae,d_in], b_enc, b_dec, threshold).

Reads the v6 layout (`architecture`, `k`, `metadata.hook_name`) and the pre-6 one (`hook_name`,
`activation_fn_str`, `activation_fn_kwargs`). Writes v6, folding steerlab's input scale into the
weights so SAELens (normalize_activations='none') computes the same function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from steerlab.errors import SteerlabError
from steerlab.paths import atomic_dir
from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.formats._files import read_json, read_safetensors, require
from steerlab.sae.hookpoints import hook_name, parse_hook_name

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
STEERLAB_CFG = "steerlab.json"


def is_saelens(folder: Path) -> bool:
    return (folder / CFG).is_file() and (folder / WEIGHTS).is_file()


def _activation(cfg: dict[str, Any]) -> tuple[str, int | None]:
    arch = cfg.get("architecture", "standard")
    fn = cfg.get("activation_fn_str") or cfg.get("activation_fn")
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    if arch in ("jumprelu", "jumprelu_skip_transcoder"):
        return "jumprelu", None
    if arch in ("topk", "batchtopk") or fn == "topk":
        if not k:
            raise SteerlabError("This SAELens TopK config has no k.")
        return "topk", int(k)
    if arch == "standard" and fn in (None, "relu"):
        return "relu", None
    raise SteerlabError(
        f"SAELens architecture '{arch}' (activation {fn}) is not supported; steerlab reads standard, topk and jumprelu."
    )


def read_saelens(folder: Path) -> Sae:
    """An Sae from a SAELens folder."""
    cfg = read_json(folder / CFG)
    weights = read_safetensors(folder / WEIGHTS)
    require(weights, ("W_enc", "W_dec", "b_enc", "b_dec"), folder / WEIGHTS, "SAELens")
    meta = cfg.get("metadata") or {}
    name = meta.get("hook_name") or cfg.get("hook_name")
    if not name:
        raise SteerlabError(f"SAELens config {folder / CFG} names no hook point (hook_name).")
    layer, site = parse_hook_name(name)
    activation, k = _activation(cfg)
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm not in ("none",):
        raise SteerlabError(
            f"SAELens normalize_activations='{norm}' stores no scale factor in the folder; fold it into the weights first (SAELens fold_activation_norm_scaling_factor)."
        )
    d_in, d_sae = weights["W_enc"].shape
    if "d_in" in cfg and (int(cfg["d_in"]), int(cfg["d_sae"])) != (d_in, d_sae):
        raise SteerlabError(
            f"SAELens config says d_in={cfg['d_in']}, d_sae={cfg['d_sae']} but W_enc has shape {(d_in, d_sae)}."
        )
    weights = dict(weights)
    if "log_threshold" in weights and "threshold" not in weights:
        weights["threshold"] = weights["log_threshold"].exp()
    if "scaling_factor" in weights:  # old SAELens: a per-latent factor folded into the encoder
        s = weights["scaling_factor"]
        weights["W_enc"] = weights["W_enc"] * s
        weights["b_enc"] = weights["b_enc"] * s
        weights["W_dec"] = weights["W_dec"] / s[:, None]
    extra: dict[str, Any] = {"format": "saelens"}
    ours = folder / STEERLAB_CFG
    batchtopk_inference = "threshold"
    if ours.is_file():  # written by steerlab: keep its labels (BatchTopK stays BatchTopK; the scale is folded)
        saved = read_json(ours)
        extra.update(saved.get("extra", {}))
        original = saved.get("config", {})
        if original.get("activation") == "batchtopk":
            activation, k = "batchtopk", int(original["k"])
            batchtopk_inference = original.get("batchtopk_inference", "threshold")
        if original.get("normalization", "none") != "none":
            extra["folded_normalization"] = original["normalization"]
            extra["folded_input_scale"] = original.get("input_scale")
    scfg = SaeConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation=activation,
        k=k,
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        layer=layer,
        site=site,
        model=meta.get("model_name") or cfg.get("model_name"),
        hook_name=name,
        extra=extra,
        batchtopk_inference=batchtopk_inference,
    )
    return Sae.from_weights(scfg, {k: v.float() for k, v in weights.items()}, source=str(folder))


def folded_weights(sae: Sae) -> dict[str, torch.Tensor]:
    """Canonical tensors with the input scale folded in, so encode(x) and decode(z) need no scale."""
    s = float(sae.cfg.input_scale)
    out = {
        "W_enc": sae.W_enc.detach() * s,
        "b_enc": sae.b_enc.detach().clone(),
        "W_dec": sae.W_dec.detach() / s,
        "b_dec": sae.b_dec.detach() / s,
    }
    if sae.cfg.activation == "jumprelu" or (
        sae.cfg.activation == "batchtopk" and sae.cfg.batchtopk_inference == "threshold"
    ):
        out["threshold"] = sae.threshold.detach().clone()
    return {k: v.contiguous() for k, v in out.items()}


def write_saelens(sae: Sae, folder: Path) -> Path:
    """Save as a SAELens v6 folder (plus steerlab.json with steerlab's own config for provenance), replaced whole."""
    with atomic_dir(folder) as tmp:
        _write_saelens(sae, tmp)
    return folder


def _write_saelens(sae: Sae, folder: Path) -> None:
    c = sae.cfg
    uses_threshold = c.activation == "jumprelu" or (
        c.activation == "batchtopk" and c.batchtopk_inference == "threshold"
    )
    arch = "jumprelu" if uses_threshold else "topk" if c.activation in ("topk", "batchtopk") else "standard"
    cfg: dict[str, Any] = {
        "architecture": arch,
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": c.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": c.model,
            "hook_name": hook_name(c.layer, c.site),
            "hook_head_index": None,
            "prepend_bos": True,
            "sae_lens_training_version": None,
            "steerlab_normalization": c.normalization,
            "steerlab_input_scale_folded": c.input_scale,
        },
    }
    if arch == "topk":
        cfg["k"] = c.k
        cfg["rescale_acts_by_decoder_norm"] = False
    save_file(folded_weights(sae), str(folder / WEIGHTS))
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    (folder / STEERLAB_CFG).write_text(json.dumps({"config": c.to_dict(), "extra": c.extra}, indent=2, default=str))
