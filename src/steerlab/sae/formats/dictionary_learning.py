"""dictionary_learning folders: `ae.pt` (state dict) + `config.json` ({"trainer": {"dict_class", "activation_dim", "dict_size", "k", "layer", "submodule_name", "lm_name"}}).

References (dictionary_learning/dictionary.py and trainers/):
  AutoEncoder         bias [d], encoder.{weight [F,d], bias}, decoder.weight [d,F]:
                      z = relu(encoder(x - bias)); x_hat = decoder(z) + bias
  AutoEncoderTopK     encoder.{weight,bias}, decoder.weight, b_dec, k:
                      z = topk(relu(encoder(x - b_dec))); x_hat = decoder(z) + b_dec
  BatchTopKSAE        as TopK plus a global `threshold` used at inference: z = relu(pre) * (relu(pre) > threshold)
  JumpReluAutoEncoder W_enc, b_enc, W_dec, b_dec, threshold (b_dec not on input); its features are
                      multiplied by ||W_dec row|| in encode and divided in decode, folded here exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from steerlab.errors import SteerlabError
from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.formats._files import read_json, read_torch, require
from steerlab.sae.hookpoints import parse_hook_name


def _where(trainer: dict, layer: int | None, site: str | None) -> tuple[int, str]:
    sub = trainer.get("submodule_name")
    if sub and (layer is None or site is None):
        try:
            got_layer, got_site = parse_hook_name(sub)
            layer = got_layer if layer is None else layer
            site = site or got_site
        except SteerlabError:
            pass
    if layer is None:
        layer = trainer.get("layer")
    if layer is None:
        raise SteerlabError("The dictionary_learning config names no layer; pass --layer.")
    return int(layer), site or "resid_post"


def read_dictionary_learning(path: Path, layer: int | None = None, site: str | None = None) -> Sae:
    """An Sae from a dictionary_learning folder (or its ae.pt, with config.json beside it)."""
    folder = path if path.is_dir() else path.parent
    file = folder / "ae.pt" if path.is_dir() else path
    sd = read_torch(file)
    trainer = read_json(folder / "config.json").get("trainer", {}) if (folder / "config.json").is_file() else {}
    cls = trainer.get("dict_class") or _guess_class(sd)
    layer, site = _where(trainer, layer, site)
    model = trainer.get("lm_name")
    if cls == "AutoEncoder":
        require(
            sd, ("encoder.weight", "encoder.bias", "decoder.weight", "bias"), file, "dictionary_learning AutoEncoder"
        )
        w = {
            "W_enc": sd["encoder.weight"].T,
            "b_enc": sd["encoder.bias"],
            "W_dec": sd["decoder.weight"].T,
            "b_dec": sd["bias"],
        }
        activation, k, b_dec_in, extra = "relu", None, True, {}
    elif cls in ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        require(sd, ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec"), file, f"dictionary_learning {cls}")
        w = {
            "W_enc": sd["encoder.weight"].T,
            "b_enc": sd["encoder.bias"],
            "W_dec": sd["decoder.weight"].T,
            "b_dec": sd["b_dec"],
        }
        k = int(sd["k"]) if "k" in sd else trainer.get("k")
        if not k:
            raise SteerlabError(f"{file} is a TopK SAE but neither the file nor config.json gives k.")
        b_dec_in, extra = True, {}
        threshold = sd.get("threshold")
        if cls != "AutoEncoderTopK" and threshold is not None and float(threshold.reshape(-1)[0]) >= 0:
            activation = "batchtopk"
            # Reference keeps relu(pre) > threshold; with threshold >= 0 that is our relu(pre) * (pre > threshold).
            w["threshold"] = threshold.reshape(-1).expand(w["b_enc"].shape[0]).clone()
        else:
            activation = "topk"
    elif cls == "JumpReluAutoEncoder":
        require(sd, ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"), file, "dictionary_learning JumpReluAutoEncoder")
        norms = sd["W_dec"].float().norm(dim=1)
        w = {
            "W_enc": sd["W_enc"].float() * norms,
            "b_enc": sd["b_enc"].float() * norms,
            "W_dec": sd["W_dec"].float() / norms[:, None],
            "b_dec": sd["b_dec"],
            "threshold": sd["threshold"].float() * norms,
        }
        activation, k, b_dec_in, extra = "jumprelu", None, False, {"folded_decoder_norms": True}
    else:
        raise SteerlabError(
            f"dictionary_learning class '{cls}' is not supported; steerlab reads AutoEncoder, AutoEncoderTopK, BatchTopKSAE and JumpReluAutoEncoder."
        )
    d_in, d_sae = w["W_enc"].shape
    cfg = SaeConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation=activation,
        k=k if activation != "relu" and activation != "jumprelu" else None,
        apply_b_dec_to_input=b_dec_in,
        layer=layer,
        site=site,
        model=model,
        batchtopk_inference="threshold",
        extra={"format": "dictionary_learning", "dict_class": cls, **extra},
    )
    return Sae.from_weights(cfg, {k_: torch.as_tensor(v).float() for k_, v in w.items()}, source=str(file))


def _guess_class(sd: dict) -> str:
    if "W_enc" in sd:
        return "JumpReluAutoEncoder"
    if "b_dec" in sd:
        return "BatchTopKSAE" if "threshold" in sd else "AutoEncoderTopK"
    if "bias" in sd:
        return "AutoEncoder"
    raise SteerlabError("This state dict matches no dictionary_learning class (no W_enc, b_dec or bias).")
