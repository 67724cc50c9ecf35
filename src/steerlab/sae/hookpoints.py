"""Hook-point names: SAELens/TransformerLens, HF hidden_states, sparsify and dictionary_learning -> steerlab (layer, site).

The one mapping every reader uses, written down once (lessons.md, lesson 6):
  TL/SAELens  blocks.L.hook_resid_pre   -> (L, resid_pre)      == HF hidden_states[L]
              blocks.L.hook_resid_post  -> (L, resid_post)     == HF hidden_states[L+1] (except the
                                                                  last layer: HF applies the final norm)
              blocks.L.hook_attn_out    -> (L, attn_out)
              blocks.L.hook_mlp_out     -> (L, mlp_out)
              blocks.L.attn.hook_z      -> (L, head)
              blocks.L.mlp.hook_post    -> (L, neuron)
  sparsify    layers.L                  -> (L, resid_post)  (the decoder layer's output)
              layers.L.mlp / .self_attn -> (L, mlp_out) / (L, attn_out)
  dictionary_learning  resid_post_layer_L / mlp_out_layer_L / attn_out_layer_L
  Goodfire / HF module names  model.layers.L -> (L, resid_post)
"""

from __future__ import annotations

import re

from steerlab.errors import SteerlabError
from steerlab.models.arch import SITES

_TL_SITES = {
    "hook_resid_pre": "resid_pre",
    "hook_resid_post": "resid_post",
    "hook_attn_out": "attn_out",
    "hook_mlp_out": "mlp_out",
    "attn.hook_z": "head",
    "mlp.hook_post": "neuron",
}
_SITE_TO_TL = {site: hook for hook, site in _TL_SITES.items()}
_MODULE_SUFFIX = {"": "resid_post", "mlp": "mlp_out", "self_attn": "attn_out", "attn": "attn_out"}

_TL = re.compile(r"^blocks\.(\d+)\.(.+)$")
_MODULE = re.compile(r"^(?:model\.|transformer\.|gpt_neox\.)?(?:layers|h)\.(\d+)(?:\.(mlp|self_attn|attn))?$")
_DICTLEARN = re.compile(r"^(resid_post|resid_pre|mlp_out|attn_out)_layer_?(\d+)$")


def parse_hook_name(name: str) -> tuple[int, str]:
    """(layer, site) for a TL/SAELens hook name, an HF/sparsify module path or a dictionary_learning submodule name."""
    text = name.strip()
    if m := _TL.match(text):
        hook = m.group(2)
        if hook not in _TL_SITES:
            raise SteerlabError(
                f"Hook point '{name}' is not one steerlab can read; supported: {', '.join('blocks.L.' + h for h in _TL_SITES)}."
            )
        return int(m.group(1)), _TL_SITES[hook]
    if m := _MODULE.match(text):
        return int(m.group(1)), _MODULE_SUFFIX[m.group(2) or ""]
    if m := _DICTLEARN.match(text):
        return int(m.group(2)), m.group(1)
    raise SteerlabError(
        f"Unknown hook point '{name}'; expected e.g. 'blocks.12.hook_resid_post', 'layers.12' or 'resid_post_layer_12'."
    )


def hook_name(layer: int, site: str) -> str:
    """The TL/SAELens hook name for a steerlab (layer, site)."""
    if site not in _SITE_TO_TL:
        raise SteerlabError(f"Unknown site '{site}'; choose one of: {', '.join(SITES)}.")
    return f"blocks.{int(layer)}.{_SITE_TO_TL[site]}"


def hidden_states_index(layer: int, site: str) -> int:
    """Index into HF `output_hidden_states` holding a residual site (resid_pre L -> L, resid_post L -> L+1)."""
    if site == "resid_pre":
        return int(layer)
    if site == "resid_post":
        return int(layer) + 1
    raise SteerlabError(f"Only residual sites appear in HF hidden_states; '{site}' does not.")


def from_hidden_states_index(index: int, n_layers: int) -> tuple[int, str]:
    """(layer, site) for an HF hidden_states index; the last index is after the final norm and has no site."""
    if index < 0:
        index += n_layers + 1
    if not 0 <= index <= n_layers:
        raise SteerlabError(
            f"hidden_states index {index} is out of range for a {n_layers}-layer model (0 to {n_layers})."
        )
    if index == n_layers:
        raise SteerlabError(
            f"hidden_states[{index}] is the final-norm output, not a residual stream; SAEs trained on it read "
            f"something no layer hook sees (use resid_post of layer {n_layers - 1} only if the SAE was trained before the norm)."
        )
    return (0, "resid_pre") if index == 0 else (index - 1, "resid_post")
