"""The `Sae` module: one place for every SAE convention (activation, b_dec on input, input scale, site)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

import torch
from torch import nn

from steerlab.errors import SteerlabError

Activation = Literal["relu", "topk", "jumprelu"]


@dataclass
class SaeConfig:
    """An SAE's conventions, explicit and JSON round-trippable."""

    d_in: int
    d_sae: int
    activation: Activation = "relu"
    k: int | None = None  # TopK: latents kept per token
    apply_b_dec_to_input: bool = True  # subtract b_dec from the (scaled) input before encoding
    input_scale: float = 1.0  # the input is multiplied by this before encoding; decode divides by it
    layer: int = 0
    site: str = "resid_post"  # steerlab site name, see steerlab.models.arch
    model: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SaeConfig":
        return cls(**json.loads(text))


class Sae(nn.Module):
    """A sparse autoencoder over one site of one layer; runs in fp32 whatever the model dtype."""

    def __init__(self, cfg: SaeConfig, source: str = "in-memory"):
        super().__init__()
        if cfg.activation == "topk" and not cfg.k:
            raise SteerlabError("A TopK SAE needs k (the number of latents kept per token).")
        self.cfg = cfg
        self.source = source
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae), requires_grad=False)

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

    @property
    def layer(self) -> int:
        return self.cfg.layer

    @property
    def site(self) -> str:
        return self.cfg.site

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype) * self.cfg.input_scale
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def _activate(self, pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation == "jumprelu":
            return pre * (pre > threshold)
        return torch.relu(pre)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations for activations x [..., d_in]."""
        pre = self._prepare(x) @ self.W_enc + self.b_enc
        if self.cfg.activation == "topk":
            values, indices = torch.topk(pre, self.cfg.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))
        return self._activate(pre, self.threshold)

    def encode_latents(self, x: torch.Tensor, latents: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Activations of only the given latents: O(k*d) per token for ReLU/JumpReLU (TopK needs the full pass)."""
        idx = torch.as_tensor(latents, dtype=torch.long, device=self.W_enc.device)
        if self.cfg.activation == "topk":
            return self.encode(x)[..., idx]
        pre = self._prepare(x) @ self.W_enc[:, idx] + self.b_enc[idx]
        return self._activate(pre, self.threshold[idx])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction in the model's activation space (undoing the input scale)."""
        return (z @ self.W_dec + self.b_dec) / self.cfg.input_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """The SAE error term x - decode(encode(x)), kept when latents are edited."""
        return x.to(self.W_enc.dtype) - self.forward(x)

    def direction(self, latent: int) -> torch.Tensor:
        """A latent's decoder row in model space (what steering along it adds per unit strength)."""
        self.check_latent(latent)
        return self.W_dec[latent] / self.cfg.input_scale

    def check_latent(self, latent: int) -> None:
        """Raise one sentence if a latent id is out of range."""
        if not 0 <= int(latent) < self.cfg.d_sae:
            raise SteerlabError(f"Latent {latent} is out of range: this SAE has latents 0 to {self.cfg.d_sae - 1}.")
