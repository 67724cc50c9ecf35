"""EleutherAI sparsify folders: `cfg.json` ({"k", "num_latents", "expansion_factor", "d_in", ...}) + `sae.safetensors`.

Reference (sparsify/sparse_coder.py): encoder.weight [F,d], encoder.bias [F], W_dec [F,d], b_dec [d];
z = topk(relu(encoder(x - b_dec))); x_hat = z @ W_dec + b_dec. The folder name is the hook point
(`layers.12` = output of decoder layer 12 = resid_post 12).
"""

from __future__ import annotations

from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.formats._files import read_json, read_safetensors, require
from steerlab.sae.hookpoints import parse_hook_name


def is_sparsify(folder: Path) -> bool:
    return (folder / "cfg.json").is_file() and (folder / "sae.safetensors").is_file()


def read_sparsify(folder: Path, layer: int | None = None, site: str | None = None, model: str | None = None) -> Sae:
    """An Sae from a sparsify folder."""
    cfg = read_json(folder / "cfg.json")
    sd = read_safetensors(folder / "sae.safetensors")
    require(sd, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), folder / "sae.safetensors", "sparsify")
    if cfg.get("transcode") or "W_skip" in sd:
        raise SteerlabError(
            f"{folder} is a sparsify transcoder/skip-connection model, not an SAE; steerlab reads plain SAEs."
        )
    if cfg.get("activation", "topk") != "topk":
        raise SteerlabError(f"sparsify activation '{cfg.get('activation')}' is not supported; steerlab reads TopK.")
    if layer is None or site is None:
        try:
            got_layer, got_site = parse_hook_name(folder.name)
        except SteerlabError as exc:
            raise SteerlabError(
                f"Cannot tell which hook point {folder} reads from its name; pass --layer and --site."
            ) from exc
        layer = got_layer if layer is None else layer
        site = site or got_site
    d_sae, d_in = sd["encoder.weight"].shape
    if "d_in" in cfg and int(cfg["d_in"]) != d_in:
        raise SteerlabError(f"sparsify config says d_in={cfg['d_in']} but the encoder has width {d_in}.")
    k = cfg.get("k")
    if not k:
        raise SteerlabError(f"sparsify config {folder / 'cfg.json'} has no k.")
    weights = {
        "W_enc": sd["encoder.weight"].float().T,
        "b_enc": sd["encoder.bias"].float(),
        "W_dec": sd["W_dec"].float(),
        "b_dec": sd["b_dec"].float(),
    }
    scfg = SaeConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        activation="topk",
        k=int(k),
        apply_b_dec_to_input=True,
        layer=int(layer),
        site=site,
        model=model,
        hook_name=folder.name,
        extra={"format": "sparsify"},
    )
    return Sae.from_weights(scfg, weights, source=str(folder))
