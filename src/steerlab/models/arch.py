"""Map each model family to the modules steerlab hooks: layers, attention o_proj, MLP down_proj.

Sites (all per decoder layer L):
  resid_pre   the residual stream entering layer L   (HF hidden_states[L])
  resid_post  the residual stream leaving layer L    (HF hidden_states[L+1]; for the last layer HF
              applies the final norm to hidden_states[-1], steerlab's resid_post does not)
  attn_out    the attention block's output, before it joins the residual (and before any post-norm)
  mlp_out     the MLP block's output
  head        the input of o_proj, viewed as [n_heads, head_dim] (per-head outputs, GQA-safe)
  neuron      the input of down_proj (one unit per MLP hidden channel)
TransformerLens/SAELens `blocks.L.hook_resid_post` is steerlab's (L, resid_post); `hook_resid_pre` is
(L, resid_pre); `hook_attn_out`/`hook_mlp_out` map to attn_out/mlp_out; `attn.hook_z` to head; `mlp.hook_post` to neuron.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from steerlab.errors import SteerlabError

SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out", "head", "neuron")


@dataclass(frozen=True)
class FamilyLayout:
    """Attribute paths of one model family's modules."""

    layers: tuple[str, ...]  # candidate paths to the decoder-layer ModuleList
    attn: str
    o_proj: str
    mlp: str
    down_proj: str


_LLAMA_LIKE = FamilyLayout(
    layers=("model.layers", "model.language_model.layers", "language_model.model.layers"),
    attn="self_attn",
    o_proj="o_proj",
    mlp="mlp",
    down_proj="down_proj",
)
_GPT2 = FamilyLayout(layers=("transformer.h",), attn="attn", o_proj="c_proj", mlp="mlp", down_proj="c_proj")

FAMILIES: dict[str, FamilyLayout] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "gpt2": _GPT2,
}


def _get(root: nn.Module, path: str) -> nn.Module | None:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class Arch:
    """One model's layout and sizes, read from its config and module tree."""

    def __init__(self, model: nn.Module):
        config = model.config
        model_type = getattr(config, "model_type", "?")
        if model_type not in FAMILIES:
            supported = ", ".join(sorted(FAMILIES))
            raise SteerlabError(
                f"Architecture '{model_type}' is not supported yet; supported families are: {supported}."
            )
        self.model_type = model_type
        self.layout = FAMILIES[model_type]
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        path = next((p for p in self.layout.layers if _get(model, p) is not None), None)
        if path is None:
            raise SteerlabError(f"Could not find the decoder layers of this '{model_type}' model.")
        self.layers: nn.ModuleList = _get(model, path)  # type: ignore[assignment]
        # The module that owns the layer list (LlamaModel, GPT2Model, ...): it embeds, runs the layers, norms.
        self.decoder: nn.Module = _get(model, path.rsplit(".", 1)[0])  # type: ignore[assignment]
        self.n_layers = len(self.layers)
        self.d_model = int(getattr(text_config, "hidden_size", None) or text_config.n_embd)
        self.n_heads = int(getattr(text_config, "num_attention_heads", None) or text_config.n_head)
        self.n_kv_heads = int(getattr(text_config, "num_key_value_heads", None) or self.n_heads)
        self.head_dim = int(getattr(text_config, "head_dim", None) or self.d_model // self.n_heads)
        d_mlp = getattr(text_config, "intermediate_size", None) or getattr(text_config, "n_inner", None)
        self.d_mlp = int(d_mlp or 4 * self.d_model)

    def check_layer(self, layer: int) -> int:
        """Return the layer index if valid, else raise one clear sentence."""
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise SteerlabError(f"Layer {layer} is out of range: this model has layers 0 to {self.n_layers - 1}.")
        return layer

    def site_width(self, site: str) -> int:
        """Width of the activation at a site (heads: n_heads * head_dim)."""
        if site in ("resid_pre", "resid_post", "attn_out", "mlp_out"):
            return self.d_model
        if site == "head":
            return self.n_heads * self.head_dim
        if site == "neuron":
            return self.d_mlp
        raise SteerlabError(f"Unknown site '{site}'; choose one of: {', '.join(SITES)}.")

    def n_units(self, kind: str) -> int:
        """Number of maskable units of a kind ('head' or 'neuron') per layer."""
        if kind == "head":
            return self.n_heads
        if kind == "neuron":
            return self.d_mlp
        raise SteerlabError(f"Unknown unit kind '{kind}'; choose 'head' or 'neuron'.")

    def site_module(self, layer: int, site: str) -> tuple[nn.Module, str]:
        """The module to hook for a site and whether to hook its input ('pre') or output ('post')."""
        block = self.layers[self.check_layer(layer)]
        if site == "resid_pre":
            return block, "pre"
        if site == "resid_post":
            return block, "post"
        attn = _get(block, self.layout.attn)
        mlp = _get(block, self.layout.mlp)
        if site == "attn_out":
            return attn, "post"
        if site == "mlp_out":
            return mlp, "post"
        if site == "head":
            return _get(attn, self.layout.o_proj), "pre"
        if site == "neuron":
            return _get(mlp, self.layout.down_proj), "pre"
        raise SteerlabError(f"Unknown site '{site}'; choose one of: {', '.join(SITES)}.")

    def hook_site(self, layer: int, site: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> RemovableHandle:
        """Call fn on a site's activation in every forward; what fn returns replaces it (None keeps it).

        A 'pre' site's activation is its module's first positional input, or its `hidden_states`
        keyword when the caller passes it by name (transformers 5 calls decoder layers that way);
        a 'post' site's is the module's output (the first item when the output is a tuple).
        The caller removes the returned handle.
        """
        module, kind = self.site_module(layer, site)
        if kind == "pre":

            def pre_hook(mod, args, kwargs):
                if args:
                    new = fn(args[0])
                    return None if new is None else ((new,) + tuple(args[1:]), kwargs)
                new = fn(kwargs["hidden_states"])
                return None if new is None else (args, {**kwargs, "hidden_states": new})

            return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def post_hook(mod, args, output):
            new = fn(output[0] if isinstance(output, tuple) else output)
            if new is None:
                return None
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        return module.register_forward_hook(post_hook)

    def o_proj(self, layer: int) -> nn.Module:
        """The attention output projection of a layer."""
        return _get(self.layers[self.check_layer(layer)], f"{self.layout.attn}.{self.layout.o_proj}")

    def down_proj(self, layer: int) -> nn.Module:
        """The MLP output projection of a layer."""
        return _get(self.layers[self.check_layer(layer)], f"{self.layout.mlp}.{self.layout.down_proj}")
