"""Batched, KV-cached decoding with per-row interventions and per-row seeds.

A lean loop of our own: prefill computes logits for the last position only, each decode step is one
forward of one token per row, positions come from the attention mask (left padding), and the hooks
are told the absolute position of every token so steering never depends on the chunk length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from steerlab.engine import prefix as shared_prefix
from steerlab.engine.decode import direct_decode, fusable_groups
from steerlab.engine.forward import call_model, left_pad, new_cache, positions_from_mask
from steerlab.engine.kv_cache import preallocate
from steerlab.engine.options import EngineOptions
from steerlab.engine.packed import MAX_ROWS as MAX_PACKED_ROWS
from steerlab.engine.packed import fused_linears, packed_linears
from steerlab.engine.sampling import Sampling, choose
from steerlab.errors import SteerlabError
from steerlab.interventions.hooks import Session, apply, batch_per_row
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model, Prompt
from steerlab.progress import progress_bar


@dataclass
class Generation:
    """One row's result: the text, its token ids, why it stopped, and any recorded activations."""

    prompt: Prompt
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str  # "eos" | "stop" | "length"
    seed: int
    records: dict[str, torch.Tensor] = field(default_factory=dict)
    logprobs: torch.Tensor | None = None  # log-prob of each kept token under the (steered) model, if asked


InterventionsArg = Sequence[Intervention] | Sequence[Sequence[Intervention]] | None
# Called after each decode step with (prompt indices still decoding, the token each just chose); returns the prompt
# indices to stop now (a streaming server's cancelled requests) or None. Their Generation is then cut where they stopped.
StepCallback = Callable[[list[int], list[int]], Sequence[int] | None]


def normalise_interventions(interventions: InterventionsArg, n_rows: int) -> list[Intervention]:
    """A shared list (each item may be batched over all rows) or one list per row -> batched list."""
    if not interventions:
        return []
    items = list(interventions)
    if all(isinstance(x, (list, tuple)) for x in items):
        if len(items) != n_rows:
            raise SteerlabError(
                f"Got {len(items)} per-row intervention lists for {n_rows} prompts; give one list per prompt."
            )
        return batch_per_row(items)
    for iv in items:
        if not isinstance(iv, Intervention):
            raise SteerlabError(f"{iv!r} is not an intervention; build one with steerlab.AddVector, SteerLatent, ...")
        if iv.batch_size not in (None, n_rows):
            raise SteerlabError(f"A per-row intervention has {iv.batch_size} rows but there are {n_rows} prompts.")
    return items


def _row_seeds(seed: int | Sequence[int], n_rows: int) -> list[int]:
    if isinstance(seed, int):
        seeds = [seed + i for i in range(n_rows)]
    else:
        seeds = [int(s) for s in seed]
    if len(seeds) != n_rows:
        raise SteerlabError(f"Got {len(seeds)} seeds for {n_rows} prompts; give one seed per prompt or a single int.")
    if seeds and not (0 <= min(seeds) and max(seeds) < 2**62):
        raise SteerlabError(
            f"Seeds must be whole numbers from 0 to 2**62; got {min(seeds) if min(seeds) < 0 else max(seeds)}."
        )
    return seeds


def generate(
    model: Model,
    prompts: Sequence[Prompt],
    interventions: InterventionsArg = None,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    stop: Sequence[str] = (),
    seed: int | Sequence[int] = 0,
    batch_size: int = 32,
    chat: bool | None = None,
    system: str | None = None,
    ignore_eos: bool = False,
    return_logprobs: bool = False,
    progress: bool = False,
    on_step: StepCallback | None = None,
    engine_options: EngineOptions | None = None,
) -> list[Generation]:
    """Generate for every prompt with the given interventions; rows are independent of their batch.

    Args:
        model: the loaded model (`steerlab.load`).
        prompts: user messages (the chat template is applied once) or token-id lists.
        interventions: a list applied to every row (fields may carry a batch dimension over all prompts),
            or one list per prompt; None for none.
        max_new_tokens: tokens to generate per row (at least 1).
        temperature: 0 is greedy; above 0 samples with per-row seeded noise.
        top_p: nucleus sampling mass (1 turns it off).
        top_k: keep the k most likely tokens (0 turns it off).
        repetition_penalty: the CTRL rule on tokens already in the row (1 turns it off).
        stop: strings that end a row (the text is cut before them).
        seed: one int (row i gets seed + i) or one seed per prompt; a row's sample never depends on its batch.
        batch_size: rows per forward pass (rows of similar length share a batch).
        chat: apply the chat template (None = when the tokenizer has one).
        system: a system message for the chat template.
        ignore_eos: always generate max_new_tokens (benchmarks, fixed-length traces).
        return_logprobs: also return each generated token's log-prob.
        progress: show a progress bar.
        on_step: see StepCallback (token streaming and cancellation); indices are positions in `prompts`.
        engine_options: the speed paths for this call (engine.options.EngineOptions; None = the defaults).
            They change how fast, never what: `EngineOptions.plain()` gives the same tokens.

    Returns:
        One Generation per prompt, in the prompts' order (text, token ids, finish reason, optional
        log-probs and recorded activations).
    """
    prompts = list(prompts)
    if not prompts:
        raise SteerlabError("The prompt list is empty; give at least one prompt.")
    if max_new_tokens < 1:
        raise SteerlabError("max_new_tokens must be at least 1.")
    sampling = Sampling(temperature, top_p, top_k, repetition_penalty)
    speed = engine_options if engine_options is not None else EngineOptions()
    batched = normalise_interventions(interventions, len(prompts))
    seeds = _row_seeds(seed, len(prompts))
    encoded = [model.encode(p, chat=chat, system=system) for p in prompts]
    # Validate every intervention against the model before any forward pass.
    Session(model, batched)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
    results: list[Generation | None] = [None] * len(prompts)
    with progress_bar(progress) as bar:
        task = bar.add_task("generating", total=len(prompts), info="")
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ivs = [iv.rows(idx) if iv.batch_size else iv for iv in batched]
            step_cb = None if on_step is None else _local_callback(on_step, idx)
            options = _Options(sampling, max_new_tokens, list(stop), ignore_eos, return_logprobs, step_cb, speed)
            rows = _generate_batch(model, [encoded[i] for i in idx], ivs, options, [seeds[i] for i in idx])
            for i, (ids, text, reason, records, logprobs) in zip(idx, rows):
                results[i] = Generation(prompts[i], encoded[i], ids, text, reason, seeds[i], records, logprobs)
            bar.advance(task, len(idx))
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class _Options:
    sampling: Sampling
    max_new_tokens: int
    stop: list[str]
    ignore_eos: bool
    return_logprobs: bool
    on_step: StepCallback | None = None
    speed: EngineOptions = field(default_factory=EngineOptions)


def _local_callback(on_step: StepCallback, idx: list[int]) -> StepCallback:
    """The user's callback in prompt indices, called with this batch's row indices."""
    back = {g: r for r, g in enumerate(idx)}

    def call(rows: list[int], tokens: list[int]) -> list[int]:
        stop = on_step([idx[r] for r in rows], tokens) or ()
        return [back[g] for g in stop if g in back]

    return call


@torch.inference_mode()
def _generate_batch(
    model: Model, encoded: list[list[int]], interventions: list[Intervention], options: _Options, seeds: list[int]
) -> list[tuple[list[int], str, str, dict[str, torch.Tensor], torch.Tensor | None]]:
    """Decode one batch. Finished rows are dropped from the batch (KV cache, masks, per-row steering)."""
    sampling, max_new_tokens, stop = options.sampling, options.max_new_tokens, options.stop
    hf, tok, device = model.hf, model.tokenizer, model.device
    pad_id = model.pad_id
    input_ids, attention_mask = left_pad(encoded, pad_id, device)
    position_ids, token_positions = positions_from_mask(attention_mask)
    prompt_lengths = attention_mask.sum(-1)
    batch = len(encoded)
    seed_t = torch.tensor(seeds, device=device)
    stop_ids = torch.tensor(
        model.stop_token_ids if model.stop_token_ids and not options.ignore_eos else [-1], device=device
    )
    seen = None
    if sampling.repetition_penalty != 1.0:
        vocab = hf.get_output_embeddings().weight.shape[0]
        seen = torch.zeros(batch, vocab, dtype=torch.bool, device=device)
        seen.scatter_(1, input_ids, attention_mask.bool())
    active = torch.arange(batch, device=device)  # original row index of each row still decoding
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), device=device) if options.return_logprobs else None
    reasons = ["length"] * batch
    speed = options.speed
    groups = fusable_groups(model) if speed.direct_decode and speed.packed else []  # q/k/v, gate/up: one matmul each
    with (
        apply(model, interventions) as session,
        packed_linears(
            hf, max_rows=MAX_PACKED_ROWS if speed.packed else 0, skip=frozenset(m for g in groups for m in g)
        ),
        fused_linears(groups) as fused,
        direct_decode(model, enabled=speed.direct_decode, fused=fused, max_rows=MAX_PACKED_ROWS),
    ):
        cache = new_cache(hf)
        if speed.preallocate:
            cache = preallocate(cache, input_ids.shape[1] + max_new_tokens)
        prefix = shared_prefix.common_prefix(encoded) if speed.share_prefix else 0
        shared = shared_prefix.shared_layers(model, session, cache, prefix)
        if shared:  # rows laid out [shared prefix][padding][own suffix]
            input_ids, attention_mask = shared_prefix.layout(encoded, prefix, pad_id, device)
            logits, cache = shared_prefix.prefill(
                model, session, cache, input_ids, attention_mask, prompt_lengths, prefix, shared
            )
        # No row padded: no mask at all, so attention takes its plain causal path (no 4D mask built per step).
        padded = not bool(attention_mask.all())
        if not shared:
            session.set_step(token_positions, prompt_lengths)
            logits, cache = call_model(hf, input_ids, attention_mask if padded else None, position_ids, cache)
        for step in range(max_new_tokens):
            last = logits[:, -1].float()
            token = choose(last, sampling, seed_t, step, seen)
            tokens[active, step] = token
            if logprobs is not None:
                logprobs[active, step] = torch.log_softmax(last, -1).gather(-1, token.unsqueeze(-1)).squeeze(-1)
            done = torch.isin(token, stop_ids)
            if seen is not None:
                seen[torch.arange(len(active), device=device), token] = True
            done_rows = active[done].tolist() if bool(done.any()) else []
            for r in done_rows:
                reasons[r] = "eos"
            if stop:
                done = done | _stop_string_hits(tok, tokens, active, step, stop, reasons)
            if options.on_step is not None:
                done = done | _cancelled(options.on_step, active, token, step, reasons)
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            if done_rows or bool(done.any()):
                keep = (~done).nonzero().flatten()
                cache.batch_select_indices(keep)
                session.select_rows(keep)
                active, token, seed_t = active[keep], token[keep], seed_t[keep]
                attention_mask, prompt_lengths = attention_mask[keep], prompt_lengths[keep]
                seen = None if seen is None else seen[keep]
            if padded:
                attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], 1)
            new_positions = (prompt_lengths + step).unsqueeze(1)
            session.set_step(new_positions, prompt_lengths)
            logits, cache = call_model(hf, token.unsqueeze(1), attention_mask if padded else None, new_positions, cache)
        generated = tokens.cpu()
        lengths = _kept_lengths(generated, reasons, stop_ids.tolist())
        original_lengths = torch.tensor([len(e) for e in encoded])
        records = session.records((original_lengths + torch.tensor(lengths)).tolist())
    out = []
    for r in range(batch):
        ids = generated[r, : lengths[r]].tolist()
        text = tok.decode(ids, skip_special_tokens=True)
        if reasons[r] == "stop":
            text = _cut_at_stop(text, stop)
        row_logprobs = None if logprobs is None else logprobs[r, : lengths[r]].cpu()
        out.append((ids, text, reasons[r], {name: rows[r] for name, rows in records.items()}, row_logprobs))
    return out


def _kept_lengths(generated: torch.Tensor, reasons: list[str], stop_ids: Sequence[int]) -> list[int]:
    """Tokens each row keeps: up to (not including) its EOS, or up to the step its stop string appeared."""
    lengths = []
    for r, reason in enumerate(reasons):
        row = generated[r].tolist()
        n = len(row)
        if reason == "eos":
            n = next(i for i, t in enumerate(row) if t in stop_ids)
        elif reason.startswith("stop@"):
            n = int(reason.split("@")[1])
        lengths.append(n)
    for r, reason in enumerate(reasons):
        if reason.startswith("stop@"):
            reasons[r] = "stop"
    return lengths


def _stop_string_hits(
    tok, tokens: torch.Tensor, active: torch.Tensor, step: int, stop: list[str], reasons: list[str]
) -> torch.Tensor:
    """Which active rows' recent text contains a stop string (decodes only a short tail per row)."""
    tail = max(len(s) for s in stop) + 16
    recent = tokens[active, max(0, step + 1 - tail) : step + 1].tolist()
    hits = torch.zeros(len(active), dtype=torch.bool, device=tokens.device)
    for i, row in enumerate(active.tolist()):
        if reasons[row] == "eos":
            continue
        text = tok.decode(recent[i], skip_special_tokens=True)
        if any(s in text for s in stop):
            hits[i] = True
            reasons[row] = f"stop@{step + 1}"
    return hits


def _cancelled(
    on_step: StepCallback, active: torch.Tensor, token: torch.Tensor, step: int, reasons: list[str]
) -> torch.Tensor:
    """Tell the callback this step's tokens; the rows it names stop here, keeping what they generated."""
    rows = active.tolist()
    stop = set(on_step(rows, token.tolist()) or ())
    hits = torch.tensor([r in stop for r in rows], dtype=torch.bool, device=active.device)
    for r in stop:
        if r in rows and reasons[r] == "length":
            reasons[r] = f"stop@{step + 1}"
    return hits


def _cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text
