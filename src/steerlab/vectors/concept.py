"""Concept vectors from contrastive prompt sets (mean difference, or PCA of paired differences)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch

from steerlab.engine.scoring import trace
from steerlab.errors import SteerlabError
from steerlab.interventions.positions import Positions, Span
from steerlab.interventions.specs import AddVector, Record
from steerlab.models.loading import Model, Prompt
from steerlab.paths import atomic_path

Method = Literal["mean_diff", "pca"]
Reduce = Literal["last", "mean"]


@dataclass
class ConceptVector:
    """A direction at one site of one layer, with how it was made."""

    vector: torch.Tensor  # [d_model], fp32
    layer: int
    site: str = "resid_post"
    method: str = "mean_diff"
    model: str = "unknown"
    meta: dict = field(default_factory=dict)

    def steer(self, strength: float | torch.Tensor = 1.0, positions: Positions = "all") -> AddVector:
        """The AddVector that adds strength × this vector at its layer and site."""
        label = self.meta.get("label") or self.method
        return AddVector(self.layer, self.vector, strength, site=self.site, positions=positions, label=str(label))

    def save(self, path: str | Path) -> Path:
        """Write safetensors with the vector and JSON-string metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "layer": str(self.layer),
            "site": self.site,
            "method": self.method,
            "model": self.model,
            "meta": json.dumps(self.meta, sort_keys=True),
        }
        with atomic_path(path) as tmp:
            save_file({"vector": self.vector.detach().float().contiguous().cpu()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ConceptVector":
        """Read a vector saved by `save` (or any safetensors with one tensor named 'vector')."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise SteerlabError(f"Vector file {path} does not exist.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                if "vector" not in handle.keys():
                    raise SteerlabError(f"Vector file {path} has no tensor named 'vector'.")
                vector = handle.get_tensor("vector").float()
                meta = handle.metadata() or {}
        except SteerlabError:
            raise
        except Exception as exc:
            raise SteerlabError(f"Vector file {path} is unreadable or truncated ({exc}).") from exc
        if vector.ndim != 1:
            raise SteerlabError(f"Vector file {path} holds a tensor of shape {tuple(vector.shape)}, not one vector.")
        return cls(
            vector=vector,
            layer=int(meta.get("layer", -1)),
            site=meta.get("site", "resid_post"),
            method=meta.get("method", "unknown"),
            model=meta.get("model", "unknown"),
            meta=json.loads(meta.get("meta", "{}")),
        )


def _activations(
    model: Model, prompts: Sequence[Prompt], layer: int, site: str, reduce: Reduce, chat: bool | None
) -> torch.Tensor:
    positions: Positions = Span(-1, 0, anchor="prompt_end") if reduce == "last" else Span(1, None)
    records = trace(model, prompts, [Record(layer, site, positions=positions, name="a")], chat=chat)
    return torch.stack([r["a"].mean(0) for r in records])


def train_vector(
    model: Model,
    positive: Sequence[Prompt],
    negative: Sequence[Prompt],
    layer: int,
    *,
    site: str = "resid_post",
    method: Method = "mean_diff",
    reduce: Reduce = "last",
    chat: bool | None = None,
    label: str | None = None,
) -> ConceptVector:
    """A concept vector from prompts that show a concept (positive) and prompts that do not (negative).

    mean_diff: mean(positive) - mean(negative). pca: the first principal component of the paired
    differences (or of the centred union when counts differ), signed and scaled to agree with the mean difference.
    """
    if not positive or not negative:
        raise SteerlabError("Both the positive and the negative prompt sets need at least one prompt.")
    if method not in ("mean_diff", "pca"):
        raise SteerlabError(f"Unknown method '{method}'; choose mean_diff or pca.")
    model.arch.check_layer(layer)
    pos = _activations(model, positive, layer, site, reduce, chat)
    neg = _activations(model, negative, layer, site, reduce, chat)
    mean_diff = pos.mean(0) - neg.mean(0)
    if method == "mean_diff":
        vector = mean_diff
    else:
        if len(pos) == len(neg):
            diffs = pos - neg
        else:
            union = torch.cat([pos, neg])
            diffs = union - union.mean(0)
        _, _, v = torch.linalg.svd(diffs - diffs.mean(0) if len(pos) != len(neg) else diffs, full_matrices=False)
        direction = v[0]
        if torch.dot(direction, mean_diff) < 0:
            direction = -direction
        vector = direction * torch.dot(direction, mean_diff)
    norms = torch.cat([pos, neg]).norm(dim=-1)
    meta = {
        "label": label or method,
        "n_positive": len(positive),
        "n_negative": len(negative),
        "reduce": reduce,
        "resid_norm_median": float(norms.median()),
        "vector_norm": float(vector.norm()),
    }
    return ConceptVector(vector=vector, layer=layer, site=site, method=method, model=model.name, meta=meta)
