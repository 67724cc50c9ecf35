"""Goodfire `.pt/.pth` state dicts: encoder_linear.{weight [d_sae,d_in], bias}, decoder_linear.{weight [d_in,d_sae], bias}.

Reference: z = relu(encoder_linear(x)); x_hat = decoder_linear(z); no b_dec on the input. The
layer comes from an `-lN` / `_lN` file or folder name (Goodfire's `...-SAE-l19` reads the output of
decoder layer 19, i.e. resid_post 19) unless given explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.formats._files import read_torch, require

KEYS = ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight", "decoder_linear.bias")


def read_goodfire(path: Path, layer: int | None = None, site: str | None = None, model: str | None = None) -> Sae:
    """An Sae from a Goodfire state dict file."""
    sd = read_torch(path)
    require(sd, KEYS, path, "Goodfire")
    if layer is None:
        m = re.search(r"[-_]l(\d+)\b", str(path), flags=re.IGNORECASE)
        if not m:
            raise SteerlabError(f"Cannot tell which layer {path} reads (no '-lN' in its name); pass --layer.")
        layer = int(m.group(1))
    d_sae, d_in = sd["encoder_linear.weight"].shape
    weights = {
        "W_enc": sd["encoder_linear.weight"].float().T,
        "b_enc": sd["encoder_linear.bias"].float(),
        "W_dec": sd["decoder_linear.weight"].float().T,
        "b_dec": sd["decoder_linear.bias"].float(),
    }
    cfg = SaeConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation="relu",
        apply_b_dec_to_input=False,
        layer=int(layer),
        site=site or "resid_post",
        model=model,
        extra={"format": "goodfire"},
    )
    return Sae.from_weights(cfg, weights, source=str(path))
