"""Gemma Scope `params.npz`: W_enc [d_in,d_sae], W_dec [d_sae,d_in], b_enc, b_dec, threshold.

Reference (Gemma Scope tutorial): pre = x @ W_enc + b_enc; z = relu(pre) * (pre > threshold);
x_hat = z @ W_dec + b_dec. b_dec is NOT subtracted from the input. The file names no hook point:
the layer comes from a `layer_N` path component and the site from the release name (-res ->
resid_post, -mlp -> mlp_out, -att -> head, i.e. attn hook_z), unless given explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.formats._files import read_npz, require

_SITE_BY_KIND = {"res": "resid_post", "mlp": "mlp_out", "att": "head"}


def infer_layer_site(path: Path) -> tuple[int | None, str | None]:
    """Layer and site from a Gemma Scope path like .../gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82."""
    text = str(path)
    layer = re.search(r"layer_(\d+)", text)
    kind = re.search(r"gemma-scope-[\w.-]*?-(res|mlp|att)\b", text)
    return (int(layer.group(1)) if layer else None), (_SITE_BY_KIND[kind.group(1)] if kind else None)


def read_gemmascope(path: Path, layer: int | None = None, site: str | None = None, model: str | None = None) -> Sae:
    """An Sae from a Gemma Scope params.npz (file or its folder)."""
    file = path / "params.npz" if path.is_dir() else path
    weights = read_npz(file)
    require(weights, ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"), file, "Gemma Scope")
    guess_layer, guess_site = infer_layer_site(file)
    layer = layer if layer is not None else guess_layer
    if layer is None:
        raise SteerlabError(f"Cannot tell which layer {file} reads (no 'layer_N' in its path); pass --layer.")
    site = site or guess_site or "resid_post"
    d_in, d_sae = weights["W_enc"].shape
    cfg = SaeConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation="jumprelu",
        apply_b_dec_to_input=False,
        layer=int(layer),
        site=site,
        model=model,
        extra={"format": "gemmascope"},
    )
    return Sae.from_weights(cfg, {k: v.float() for k, v in weights.items()}, source=str(file))
