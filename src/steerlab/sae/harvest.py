"""Harvest one site's activations by running the model only up to that layer.

A forward hook stores the activation and raises a private exception, so the layers above (and the
LM head) never run. BOS, special tokens (chat-template markers included) and padding are dropped,
so an SAE never trains on or is scored on them (lessons.md, lesson 7).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from steerlab.data.corpus import Document
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model


class _StopForward(Exception):
    """Raised by the capture hook once the wanted activation exists."""


def document_ids(model: Model, doc: Document) -> list[int]:
    """Token ids of one document, with the chat template applied once (messages) or BOS added once (text)."""
    tok = model.tokenizer
    if isinstance(doc, str):
        ids = tok(doc, add_special_tokens=True)["input_ids"]
    else:
        if not getattr(tok, "chat_template", None):
            text = "\n\n".join(m["content"] for m in doc)
            ids = tok(text, add_special_tokens=True)["input_ids"]
        else:
            text = tok.apply_chat_template(list(doc), tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    while bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]
    return list(ids)


def token_rows(
    model: Model, docs: Sequence[Document], context_len: int, *, cycle: bool = False, start: int | tuple[int, int] = 0
) -> Iterator[tuple[int, list[int]]]:
    """(document index, ids) windows of at most context_len tokens; later windows of a long document restart with BOS.

    start: the first document, or (document, windows of it already read) to resume exactly where a stream stopped.
    """
    for n, _, window in _indexed_rows(model, docs, context_len, cycle, start):
        yield n, window


def _indexed_rows(
    model: Model, docs: Sequence[Document], context_len: int, cycle: bool, start: int | tuple[int, int]
) -> Iterator[tuple[int, int, list[int]]]:
    """(document index, window index within it, ids) for token_rows."""
    start_doc, skip = (start, 0) if isinstance(start, int) else (int(start[0]), int(start[1]))
    bos = model.tokenizer.bos_token_id
    if not docs:
        raise SteerlabError("The corpus is empty; give it some text.")
    if context_len < 2:  # a window of BOS alone would never advance through a document
        raise SteerlabError(f"The context length must be at least 2 tokens, got {context_len}.")
    indices = itertools.count(start_doc) if cycle else range(start_doc, len(docs))
    for n in indices:
        i = n % len(docs)
        ids = document_ids(model, docs[i])
        pos, w = 0, 0
        while pos < len(ids):
            if pos == 0 or bos is None:
                window = ids[pos : pos + context_len]
            else:
                window = [bos] + ids[pos : pos + context_len - 1]
            pos += len(window) - (1 if pos and bos is not None else 0)
            if len(window) > 1:
                if n > start_doc or w >= skip:
                    yield n, w, window
                w += 1


def special_ids(model: Model) -> torch.Tensor:
    """Ids never harvested: every special token (BOS, EOS, pad, chat-template markers)."""
    ids = set(model.tokenizer.all_special_ids)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(model.tokenizer, attr, None)
        if isinstance(value, int):
            ids.add(value)
    return torch.tensor(sorted(ids), dtype=torch.long)


@dataclass
class Harvest:
    """Activations of the kept tokens, with where they came from (for dashboards)."""

    acts: torch.Tensor  # [n, d] fp32
    token_ids: torch.Tensor  # [n]
    row: torch.Tensor  # [n] index of the window in the batch sequence
    position: torch.Tensor  # [n] position in the window


class SiteCapture:
    """Context manager: a hook that captures (layer, site) and, when `stop` is set, ends the forward there."""

    def __init__(self, model: Model, layer: int, site: str, stop: bool = True):
        model.arch.check_layer(layer)
        model.arch.site_width(site)
        self.model, self.layer, self.site, self.stop = model, layer, site, stop
        self.value: torch.Tensor | None = None
        self._handle = None
        self._running = False

    def __enter__(self) -> "SiteCapture":

        def capture(hidden: torch.Tensor) -> None:
            if not self._running:  # only forwards started by run() are captured or stopped
                return None
            self.value = hidden.detach()
            if self.stop:
                raise _StopForward

        self._handle = self.model.arch.hook_site(self.layer, self.site, capture)
        return self

    def __exit__(self, *exc) -> bool:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return False

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Forward (stopping at the site when `stop`) and return the captured [B, T, d] activation."""
        self.value = None
        self._running = True
        try:
            self.model.hf(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            self._running = False
        if self.value is None:
            raise SteerlabError(f"Layer {self.layer}'s {self.site} was never reached in the forward pass.")
        return self.value


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows (causal models: real tokens never see the padding)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def keep_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, specials: torch.Tensor) -> torch.Tensor:
    """[B, T] True at real, non-special tokens after each row's first token (right-padded rows).

    The first token of a sequence is the attention sink whether or not it is BOS: its residual norm is
    ~100x the others (SmolLM2: ~22k vs ~190 at layer 17) and it would dominate every SAE statistic.
    """
    keep = attention_mask.bool() & ~torch.isin(input_ids, specials.to(input_ids.device))
    keep[:, 0] = False
    return keep


def harvest_batch(capture: SiteCapture, rows: Sequence[Sequence[int]], specials: torch.Tensor) -> Harvest:
    """Activations of the non-special tokens of a batch of windows."""
    model = capture.model
    ids, mask = right_pad(rows, model.pad_id, model.device)
    with torch.inference_mode():
        acts = capture.run(ids, mask)
    keep = keep_mask(ids, mask, specials)
    b, t = ids.shape
    row = torch.arange(b, device=ids.device).unsqueeze(1).expand(b, t)
    pos = torch.arange(t, device=ids.device).unsqueeze(0).expand(b, t)
    return Harvest(acts[keep].float().cpu(), ids[keep].cpu(), row[keep].cpu(), pos[keep].cpu())


def iter_activations(
    model: Model,
    docs: Sequence[Document],
    layer: int,
    site: str,
    *,
    context_len: int = 128,
    batch_rows: int = 16,
    cycle: bool = False,
    start_doc: int | tuple[int, int] = 0,
) -> Iterator[tuple[torch.Tensor, tuple[int, int]]]:
    """Stream (activations [n, d], where to resume: (document, windows of it read)) over a corpus, model run up to
    the layer only. Restarting at a yielded position reproduces the rest of the stream exactly (same row batches)."""
    specials = special_ids(model)
    rows_iter = _indexed_rows(model, docs, context_len, cycle, start_doc)
    with SiteCapture(model, layer, site, stop=True) as capture:
        while True:
            batch = list(itertools.islice(rows_iter, batch_rows))
            if not batch:
                return
            harvest = harvest_batch(capture, [ids for _, _, ids in batch], specials)
            yield harvest.acts, (batch[-1][0], batch[-1][1] + 1)


@contextlib.contextmanager
def no_grad_model(model: Model) -> Iterator[None]:
    """Freeze the model's parameters for the duration (harvest and eval never need their gradients)."""
    flags = [p.requires_grad for p in model.hf.parameters()]
    for p in model.hf.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.hf.parameters(), flags):
            p.requires_grad_(f)
