"""Evaluate an SAE on held-out text: FVU, L0, dead/dense fractions, and CE loss with the SAE spliced in.

CE loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean), where CE_sae splices the SAE's
reconstruction into the site and CE_zero writes zeros there instead. Both edits touch exactly the
tokens an SAE is trained on (not padding, special tokens or the first, attention-sink token).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from steerlab.data.corpus import Document
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.sae.core import Sae
from steerlab.sae.harvest import iter_activations, keep_mask, no_grad_model, right_pad, special_ids, token_rows


@dataclass
class EvalResult:
    """Held-out quality of an SAE."""

    fvu: float
    l0: float
    dead_frac: float
    dense_frac: float
    n_tokens: int
    ce_clean: float | None = None
    ce_sae: float | None = None
    ce_zero: float | None = None
    ce_recovered: float | None = None
    ce_tokens: int = 0
    dense_threshold: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def replace_site(model: Model, layer: int, site: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace a site's activation by fn(activation) for the `with` block; the hook is always removed."""
    handle = model.arch.hook_site(layer, site, fn)
    try:
        yield
    finally:
        handle.remove()


def _ce(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token cross-entropy over real target tokens, and their count."""
    targets = ids[:, 1:]
    valid = mask[:, 1:].bool() & mask[:, :-1].bool()
    losses = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    return float(losses[valid.reshape(-1)].sum()), int(valid.sum())


def _reconstruction_stats(
    model: Model, sae: Sae, docs: Sequence[Document], n_tokens: int, context_len: int
) -> tuple[float, float, torch.Tensor, int]:
    """(FVU, L0, per-latent firing counts, tokens) over up to n_tokens held-out tokens."""
    sq_err = 0.0
    sum_x = torch.zeros(sae.d_in, dtype=torch.float64)
    sum_sq = 0.0
    l0_sum = 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.float64)
    seen = 0
    stream = iter_activations(model, docs, sae.layer, sae.site, context_len=context_len, batch_rows=8)
    with contextlib.closing(stream):  # stopping early must remove the capture hook at once
        for acts, _ in stream:
            acts = acts[: n_tokens - seen]
            with torch.no_grad():
                z = sae.encode(acts)
                recon = sae.decode(z).float()
            x = acts.double()
            sq_err += float((recon.double() - x).pow(2).sum())
            sum_x += x.sum(0)
            sum_sq += float(x.pow(2).sum())
            active = z > 0
            l0_sum += float(active.sum())
            fired += active.sum(0).double()
            seen += acts.shape[0]
            if seen >= n_tokens:
                break
    if seen == 0:
        raise SteerlabError("The evaluation text yielded no usable tokens; give a longer held-out corpus.")
    total_var = sum_sq - float(sum_x.pow(2).sum()) / seen
    return sq_err / total_var, l0_sum / seen, fired, seen


def _ce_stats(
    model: Model, sae: Sae, docs: Sequence[Document], n_tokens: int, context_len: int, batch_rows: int = 8
) -> tuple[float, float, float, int]:
    """Mean CE (clean, SAE spliced, zero-ablated) over about n_tokens target tokens."""
    specials = special_ids(model)
    totals = {"clean": 0.0, "sae": 0.0, "zero": 0.0}
    count = 0
    rows_iter = token_rows(model, docs, context_len)
    while count < n_tokens:
        batch = [ids for _, ids in itertools.islice(rows_iter, batch_rows)]
        if not batch:
            break
        ids, mask = right_pad(batch, model.pad_id, model.device)
        where = keep_mask(ids, mask, specials).unsqueeze(-1)

        def spliced(h: torch.Tensor) -> torch.Tensor:
            return torch.where(where, sae(h).to(h.dtype), h)

        def zeroed(h: torch.Tensor) -> torch.Tensor:
            return torch.where(where, torch.zeros_like(h), h)

        with torch.inference_mode():
            for name, fn in (("clean", None), ("sae", spliced), ("zero", zeroed)):
                ctx = replace_site(model, sae.layer, sae.site, fn) if fn else contextlib.nullcontext()
                with ctx:
                    logits = model.hf(input_ids=ids, attention_mask=mask, use_cache=False).logits
                loss, n = _ce(logits, ids, mask)
                totals[name] += loss
            count += n
    if count == 0:
        raise SteerlabError("The evaluation text yielded no tokens to score.")
    return totals["clean"] / count, totals["sae"] / count, totals["zero"] / count, count


def evaluate_sae(
    model: Model,
    sae: Sae,
    docs: Sequence[Document],
    *,
    n_tokens: int = 16_384,
    ce_tokens: int = 4_096,
    context_len: int = 128,
    dense_threshold: float = 0.1,
) -> EvalResult:
    """Held-out FVU / L0 / dead / dense on n_tokens, and CE recovered on ce_tokens (0 skips the LM-loss part)."""
    sae.check_fits(model)
    with no_grad_model(model):
        fvu, l0, fired, seen = _reconstruction_stats(model, sae, docs, n_tokens, context_len)
        freq = fired / seen
        result = EvalResult(
            fvu=fvu,
            l0=l0,
            dead_frac=float((fired == 0).double().mean()),
            dense_frac=float((freq > dense_threshold).double().mean()),
            n_tokens=seen,
            dense_threshold=dense_threshold,
        )
        if ce_tokens > 0:
            clean, spliced, zero, n = _ce_stats(model, sae, docs, ce_tokens, context_len)
            result.ce_clean, result.ce_sae, result.ce_zero, result.ce_tokens = clean, spliced, zero, n
            result.ce_recovered = (zero - spliced) / (zero - clean) if zero != clean else None
    return result
