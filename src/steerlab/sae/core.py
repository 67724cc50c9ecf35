"""The `Sae` module: one place for every SAE convention.

Conventions, all explicit in `SaeConfig` (lessons.md, lesson 6):
  activation         relu | topk (k per token) | batchtopk (trained with a batch-level top-k; at
                     inference either per-token top-k or one learned global threshold) | jumprelu
                     (per-latent thresholds: z = relu(pre) * (pre > threshold))
  input_scale        the input is multiplied by it before encoding and decode divides by it;
                     `normalization` says where it came from: none (1.0), constant (user-given) or
                     expected_average_norm (sqrt(d_in) / mean ||x|| measured on training data)
  apply_b_dec_to_input  subtract b_dec from the scaled input before the encoder (SAELens default)
  layer, site        where it reads, in steerlab terms (see steerlab.sae.hookpoints)
  dtype              the SAE's own dtype; inputs are cast to it and outputs stay in it
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Sequence

import torch
from torch import nn

from steerlab.errors import SteerlabError

Activation = Literal["relu", "topk", "batchtopk", "jumprelu"]
ACTIVATIONS = ("relu", "topk", "batchtopk", "jumprelu")
NORMALIZATIONS = ("none", "constant", "expected_average_norm")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class SaeConfig:
    """An SAE's conventions, explicit and JSON round-trippable."""

    d_in: int
    d_sae: int
    activation: Activation = "relu"
    k: int | None = None  # TopK / BatchTopK: latents kept per token (BatchTopK: on average)
    apply_b_dec_to_input: bool = True  # subtract b_dec from the (scaled) input before encoding
    input_scale: float = 1.0  # the input is multiplied by this before encoding; decode divides by it
    layer: int = 0
    site: str = "resid_post"  # steerlab site name, see steerlab.models.arch
    model: str | None = None
    extra: dict = field(default_factory=dict)
    normalization: str = "none"  # how input_scale was chosen: none | constant | expected_average_norm
    batchtopk_inference: str = "threshold"  # BatchTopK at inference: "topk" (k per token) or "threshold"
    dtype: str = "float32"
    hook_name: str | None = None  # the hook name in the SAE's original library, for provenance

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise SteerlabError(f"Unknown SAE activation '{self.activation}'; choose one of: {', '.join(ACTIVATIONS)}.")
        if self.activation in ("topk", "batchtopk") and not self.k:
            raise SteerlabError(f"A {self.activation} SAE needs k (the number of latents kept per token).")
        if self.normalization not in NORMALIZATIONS:
            raise SteerlabError(
                f"Unknown input normalisation '{self.normalization}'; choose one of: {', '.join(NORMALIZATIONS)}."
            )
        if self.normalization == "none" and self.input_scale != 1.0:
            raise SteerlabError("normalization='none' needs input_scale=1.0; use 'constant' for a fixed scale.")
        if not self.input_scale > 0:
            raise SteerlabError(f"input_scale must be positive, got {self.input_scale}.")
        if self.batchtopk_inference not in ("topk", "threshold"):
            raise SteerlabError("batchtopk_inference must be 'topk' or 'threshold'.")
        if self.dtype not in _DTYPES:
            raise SteerlabError(f"Unknown SAE dtype '{self.dtype}'; choose one of: {', '.join(_DTYPES)}.")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise SteerlabError(f"SAE sizes must be positive, got d_in={self.d_in}, d_sae={self.d_sae}.")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SaeConfig":
        """Build from a dict, ignoring keys this version does not know (forward compatibility)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "SaeConfig":
        return cls.from_dict(json.loads(text))


class Sae(nn.Module):
    """A sparse autoencoder over one site of one layer (fp32 by default, whatever the model dtype).

    All SAE conventions live here: input scaling, b_dec subtracted from the input, the activation (ReLU,
    JumpReLU thresholds, TopK k) and decoding. `encode`/`decode` map activations to latents and back,
    `encode_latents` computes only some latents, `direction` is a latent's decoder row in model space.
    Build one with `load_sae`, `Sae.random` or `Sae.from_weights`, or train one with `steerlab sae train`.

    Args:
        cfg: shapes, activation, layer, site and model the SAE belongs to.
        source: where it came from (a path or hub reference); interventions serialise an SAE by it.
    """

    def __init__(self, cfg: SaeConfig, source: str = "in-memory"):
        super().__init__()
        self.cfg = cfg
        self.source = source
        dt = cfg.torch_dtype
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dt))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dt))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dt))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dt))
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dt), requires_grad=False)

    @classmethod
    def random(cls, cfg: SaeConfig, seed: int = 0) -> "Sae":
        """A random SAE with unit-norm decoder rows and a tied encoder (tests, initialisation)."""
        gen = torch.Generator().manual_seed(seed)
        sae = cls(cfg, source=f"random:{seed}")
        w = torch.randn(cfg.d_sae, cfg.d_in, generator=gen)
        w = w / w.norm(dim=1, keepdim=True)
        with torch.no_grad():
            sae.W_dec.copy_(w)
            sae.W_enc.copy_(w.T)
        return sae

    @classmethod
    def from_weights(cls, cfg: SaeConfig, weights: dict[str, torch.Tensor], source: str) -> "Sae":
        """An SAE from canonical tensors W_enc [d_in,d_sae], W_dec [d_sae,d_in], b_enc, b_dec, optional threshold."""
        sae = cls(cfg, source=source)
        expected = {
            "W_enc": (cfg.d_in, cfg.d_sae),
            "W_dec": (cfg.d_sae, cfg.d_in),
            "b_enc": (cfg.d_sae,),
            "b_dec": (cfg.d_in,),
            "threshold": (cfg.d_sae,),
        }
        with torch.no_grad():
            for name, shape in expected.items():
                if name not in weights:
                    if (
                        name == "threshold"
                        and cfg.activation != "jumprelu"
                        and not (cfg.activation == "batchtopk" and cfg.batchtopk_inference == "threshold")
                    ):
                        continue
                    raise SteerlabError(f"The SAE weights from {source} lack '{name}'.")
                tensor = torch.as_tensor(weights[name])
                if tuple(tensor.shape) != shape:
                    raise SteerlabError(
                        f"SAE weight '{name}' from {source} has shape {tuple(tensor.shape)}, expected {shape}; the file does not match its config."
                    )
                if not torch.isfinite(tensor).all():
                    raise SteerlabError(
                        f"SAE weight '{name}' from {source} holds NaN or infinite values; the file is corrupt."
                    )
                getattr(sae, name).copy_(tensor.to(cfg.torch_dtype))
        return sae

    # -- identity ----------------------------------------------------------------------------
    @property
    def layer(self) -> int:
        return self.cfg.layer

    @property
    def site(self) -> str:
        return self.cfg.site

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    # -- encoding ----------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype) * self.cfg.input_scale
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder outputs before the nonlinearity, [..., d_sae]."""
        return self._prepare(x) @ self.W_enc + self.b_enc

    def _uses_topk(self) -> bool:
        return self.cfg.activation == "topk" or (
            self.cfg.activation == "batchtopk" and self.cfg.batchtopk_inference == "topk"
        )

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Apply this SAE's nonlinearity to full pre-activations."""
        if self._uses_topk():
            values, indices = torch.topk(pre, self.cfg.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
        return self._threshold(pre, self.threshold)

    def _threshold(self, pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation in ("jumprelu", "batchtopk"):
            return torch.relu(pre) * (pre > threshold)
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations for activations x [..., d_in]."""
        return self.activate(self.pre_activations(x))

    def encode_latents(self, x: torch.Tensor, latents: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Activations of only the given latents: O(k*d) per token unless the SAE selects a per-token top-k."""
        idx = torch.as_tensor(latents, dtype=torch.long, device=self.W_enc.device)
        if self._uses_topk():
            return self.encode(x)[..., idx]
        pre = self._prepare(x) @ self.W_enc[:, idx] + self.b_enc[idx]
        return self._threshold(pre, self.threshold[idx])

    # -- decoding ----------------------------------------------------------------------------
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction in the model's activation space (undoing the input scale)."""
        return (z.to(self.W_dec.dtype) @ self.W_dec + self.b_dec) / self.cfg.input_scale

    def decode_delta(self, dz: torch.Tensor, latents: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """The change in model space for a change dz in (the given) latents: linear, no bias."""
        W = (
            self.W_dec
            if latents is None
            else self.W_dec[torch.as_tensor(latents, dtype=torch.long, device=self.W_dec.device)]
        )
        return dz.to(W.dtype) @ W / self.cfg.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """The SAE error term x - decode(encode(x)), kept when latents are edited."""
        return x.to(self.W_enc.dtype) - self.forward(x)

    def direction(self, latent: int) -> torch.Tensor:
        """A latent's decoder row in model space (what steering along it adds per unit strength)."""
        self.check_latent(latent)
        return self.W_dec[latent] / self.cfg.input_scale

    # -- checks ------------------------------------------------------------------------------
    def check_latent(self, latent: int) -> None:
        """Raise one sentence if a latent id is out of range."""
        if not 0 <= int(latent) < self.cfg.d_sae:
            raise SteerlabError(f"Latent {latent} is out of range: this SAE has latents 0 to {self.cfg.d_sae - 1}.")

    def check_fits(self, model: Any) -> None:
        """Raise one sentence if this SAE cannot read the model's layer/site (wrong width, layer or site)."""
        arch = model.arch if hasattr(model, "arch") else model
        arch.check_layer(self.cfg.layer)
        width = arch.site_width(self.cfg.site)
        if width != self.cfg.d_in:
            raise SteerlabError(
                f"This SAE reads width {self.cfg.d_in} but layer {self.cfg.layer}'s {self.cfg.site} of the model has width {width}; "
                "it was trained for another model or hook point."
            )

    def content_digest(self) -> str:
        """A 16-hex-digit digest of the SAE's config and weights (bytes), recomputed only after the weights change."""
        tensors = sorted(self.state_dict(keep_vars=True).items())
        key = tuple((name, t._version, t.data_ptr()) for name, t in tensors)
        memo = getattr(self, "_digest_memo", None)
        if memo is not None and memo[0] == key:
            return memo[1]
        import hashlib

        h = hashlib.sha256(self.cfg.to_json().encode())
        for name, t in tensors:
            data = t.detach().cpu().contiguous()
            h.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
            h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        digest = h.hexdigest()[:16]
        object.__setattr__(self, "_digest_memo", (key, digest))
        return digest

    def describe(self) -> dict[str, Any]:
        """A short summary for `steerlab sae info`."""
        norms = self.W_dec.detach().float().norm(dim=1)
        return {
            "source": self.source,
            **{k: v for k, v in self.cfg.to_dict().items() if k != "extra"},
            "decoder_norm_min": float(norms.min()),
            "decoder_norm_max": float(norms.max()),
            "extra": self.cfg.extra,
        }
