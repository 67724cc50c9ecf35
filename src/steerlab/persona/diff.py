"""Model diffing over SAE latents: which latents change most between a base and a tuned model.

Both models are teacher-forced over the SAME response tokens (the base model's own answers, or given
responses), so no difference comes from differing generations. Only response tokens are encoded.
Latents are ranked by the change in mean activation (tuned - base), with the change in firing
frequency and an effect size (change / pooled per-token std) alongside, or by attribution over the
tuned model's own answers (persona.attribution); "#k" is a rank, not an id.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from steerlab.engine.scoring import ForcedBatch, forced_forward
from steerlab.errors import SteerlabError
from steerlab.interventions.specs import Record
from steerlab.models.loading import Model
from steerlab.progress import progress_bar
from steerlab.sae.core import Sae

RANK_KEYS = ("mean", "freq", "effect", "attribution")


@dataclass
class LatentChange:
    """One latent's statistics over response tokens in both models; rank 1 = largest increase."""

    rank: int
    latent: int
    mean_base: float
    mean_tuned: float
    delta_mean: float
    freq_base: float
    freq_tuned: float
    delta_freq: float
    effect_size: float
    attribution: float | None = None  # None unless the attribution score was computed


@dataclass
class _Stats:
    """Running per-latent sums over tokens (fp64) plus reconstruction error sums for the FVU."""

    d_sae: int
    d_in: int
    n: int = 0
    sum_z: torch.Tensor = field(init=False)
    sum_z2: torch.Tensor = field(init=False)
    fires: torch.Tensor = field(init=False)
    sum_x: torch.Tensor = field(init=False)
    sum_x2: float = 0.0
    sum_err2: float = 0.0
    norms: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sum_z = torch.zeros(self.d_sae, dtype=torch.float64)
        self.sum_z2 = torch.zeros(self.d_sae, dtype=torch.float64)
        self.fires = torch.zeros(self.d_sae, dtype=torch.float64)
        self.sum_x = torch.zeros(self.d_in, dtype=torch.float64)

    def add(self, x: torch.Tensor, sae: Sae) -> None:
        """Encode activations x [n, d_in] and accumulate."""
        if not len(x):
            return
        with torch.no_grad():
            z = sae.encode(x)
            recon = sae.decode(z)
        x64, z64 = x.double(), z.double()
        self.n += len(x)
        self.sum_z += z64.sum(0)
        self.sum_z2 += (z64 * z64).sum(0)
        self.fires += (z64 > 0).sum(0)
        self.sum_x += x64.sum(0)
        self.sum_x2 += float((x64 * x64).sum())
        self.sum_err2 += float(((x64 - recon.double()) ** 2).sum())
        self.norms.append(x.float().norm(dim=-1))

    def mean(self) -> torch.Tensor:
        return self.sum_z / self.n

    def var(self) -> torch.Tensor:
        return (self.sum_z2 / self.n - self.mean() ** 2).clamp(min=0.0)

    def freq(self) -> torch.Tensor:
        return self.fires / self.n

    def fvu(self) -> float:
        """Fraction of variance unexplained: sum ||x - x_hat||^2 / sum ||x - mean x||^2."""
        total = self.sum_x2 - float((self.sum_x * self.sum_x).sum()) / self.n
        return self.sum_err2 / total if total > 0 else float("nan")

    def median_norm(self) -> float:
        return float(torch.cat(self.norms).median()) if self.norms else float("nan")


_TEXT_FIELDS = ("latents", "prompts", "responses", "response_ids", "tuned_responses", "tuned_response_ids")


@dataclass
class DiffResult:
    """The ranked latents plus how well the SAE fits each model's response activations."""

    latents: list[LatentChange]  # all latents, in rank order
    rank_by: str
    layer: int
    site: str
    base: str
    tuned: str
    sae: str
    n_prompts: int
    n_tokens: int
    fvu_base: float
    fvu_tuned: float
    median_norm_base: float
    median_norm_tuned: float
    prompts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    response_ids: list[list[int]] = field(
        default_factory=list
    )  # the exact tokens scored (text may not re-tokenize the same)
    tuned_responses: list[str] = field(default_factory=list)  # the tuned model's own answers (attribution only)
    tuned_response_ids: list[list[int]] = field(default_factory=list)

    def top(self, n: int = 20) -> list[LatentChange]:
        """The n largest increases (#1..#n)."""
        return self.latents[:n]

    def bottom(self, n: int = 20) -> list[LatentChange]:
        """The n largest decreases (#-1..#-n), most negative first."""
        return self.latents[::-1][:n]

    def rank_of(self, latent: int) -> int:
        """The rank (#k) of an SAE latent id."""
        for row in self.latents:
            if row.latent == latent:
                return row.rank
        raise SteerlabError(f"Latent {latent} is not in this diff (it has {len(self.latents)} latents).")

    def summary(self) -> dict:
        """Everything but the per-latent rows and texts."""
        return {k: v for k, v in asdict(self).items() if k not in _TEXT_FIELDS}

    def to_dict(self) -> dict:
        return {
            **self.summary(),
            "latents": [asdict(r) for r in self.latents],
            **{k: getattr(self, k) for k in _TEXT_FIELDS[1:]},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DiffResult":
        """Rebuild a result written by to_json (e.g. a study step read back on resume)."""
        return cls(**{**data, "latents": [LatentChange(**r) for r in data["latents"]]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self, rows: Sequence[LatentChange] | None = None) -> str:
        """A CSV table of the given rows (default: all latents in rank order)."""
        buf = io.StringIO()
        names = list(LatentChange.__dataclass_fields__)
        writer = csv.writer(buf)
        writer.writerow(names)
        for row in self.latents if rows is None else rows:
            writer.writerow([getattr(row, n) for n in names])
        return buf.getvalue()


def check_pair(base: Model, tuned: Model, sae: Sae) -> None:
    """Raise one sentence unless the two models share architecture, width and tokenizer, and the SAE fits both."""
    cb, ct = base.hf.config, tuned.hf.config
    if getattr(cb, "model_type", None) != getattr(ct, "model_type", None):
        raise SteerlabError(
            f"The base model is a {cb.model_type} model but the tuned one is a {ct.model_type} model; diff a model against a fine-tune of itself."
        )
    if base.arch.n_layers != tuned.arch.n_layers or base.arch.site_width("resid_post") != tuned.arch.site_width(
        "resid_post"
    ):
        raise SteerlabError(
            f"The models differ in shape ({base.arch.n_layers} vs {tuned.arch.n_layers} layers, width "
            f"{base.arch.site_width('resid_post')} vs {tuned.arch.site_width('resid_post')}); diff a model against a fine-tune of itself."
        )
    if base.tokenizer.get_vocab() != tuned.tokenizer.get_vocab():
        raise SteerlabError(
            f"The two models have different tokenizers ({len(base.tokenizer)} vs {len(tuned.tokenizer)} tokens); they must share one so both read the same response tokens."
        )
    sae.check_fits(base)
    sae.check_fits(tuned)


def response_activations(
    model: Model,
    prompt_ids: Sequence[list[int]],
    response_ids: Sequence[list[int]],
    layer: int,
    site: str,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """Teacher-force prompt+response and return the site's activations at the response tokens, [n_resp, d] per row."""
    return response_activations_by_layer(model, prompt_ids, response_ids, [layer], site, batch_size)[layer]


def response_activations_by_layer(
    model: Model,
    prompt_ids: Sequence[list[int]],
    response_ids: Sequence[list[int]],
    layers: Sequence[int],
    site: str,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> dict[int, list[torch.Tensor]]:
    """Like `response_activations`, for several layers from the same forward passes.

    Args:
        model: the model to teacher-force.
        prompt_ids: each row's prompt token ids.
        response_ids: each row's response token ids (the positions read).
        layers: the decoder layers whose `site` is recorded.
        site: the activation site (e.g. resid_post).
        batch_size: rows per forward pass.
        on_batch: called with each batch's row count once it is done (progress).

    Returns:
        layer -> [n_resp, d] per row, in row order.
    """
    out: dict[int, list[torch.Tensor]] = {int(layer): [] for layer in layers}
    recs = [Record(layer=int(layer), site=site, positions="generated", name=f"x{layer}") for layer in out]
    with torch.inference_mode():
        for start in range(0, len(prompt_ids), batch_size):
            idx = list(range(start, min(start + batch_size, len(prompt_ids))))
            rows = [list(prompt_ids[i]) + list(response_ids[i]) for i in idx]
            batch = ForcedBatch.of(model, rows, [len(prompt_ids[i]) for i in idx])
            recorded = forced_forward(model, batch, recs, logits=1)[1]
            for layer in out:
                out[layer].extend(recorded[f"x{layer}"])
            if on_batch is not None:
                on_batch(len(idx))
    return out


def response_latents(
    model: Model,
    sae: Sae,
    prompt_ids: Sequence[list[int]],
    response_ids: Sequence[list[int]],
    latents: Sequence[int],
    batch_size: int = 8,
) -> Iterator[torch.Tensor]:
    """Per row, in order: the SAE's `latents` at the answer tokens, [n_resp, len(latents)], read batch by batch."""
    latents = list(latents)
    for start in range(0, len(prompt_ids), batch_size):
        for x in response_activations(
            model,
            prompt_ids[start : start + batch_size],
            response_ids[start : start + batch_size],
            sae.layer,
            sae.site,
            batch_size,
        ):
            with torch.no_grad():
                z = sae.encode_latents(x.to(sae.W_enc.device), latents)
            yield z


def _resolve_responses(
    model: Model,
    prompts: Sequence[str],
    responses,
    max_new_tokens: int,
    chat: bool | None,
    batch_size: int,
    progress: bool,
) -> tuple[list[list[int]], list[str]]:
    """(token ids, texts) of one response per prompt: given as text or ids, or the model's greedy answers."""
    if responses is None:
        from steerlab.engine.generate import generate

        gens = generate(
            model, prompts, max_new_tokens=max_new_tokens, chat=chat, batch_size=batch_size, progress=progress
        )
        return [list(g.token_ids) for g in gens], [g.text for g in gens]
    if all(isinstance(r, str) for r in responses):
        texts = list(responses)
        return [model.tokenizer(r, add_special_tokens=False)["input_ids"] for r in texts], texts
    ids = [[int(t) for t in r] for r in responses]
    if any(not 0 <= t < len(model.tokenizer) for r in ids for t in r):
        raise SteerlabError(
            f"A response token id is outside the tokenizer's vocabulary (0 to {len(model.tokenizer) - 1})."
        )
    return ids, [model.tokenizer.decode(r) for r in ids]


def diff_models(
    base: Model,
    tuned: Model,
    sae: Sae,
    prompts: Sequence[str],
    responses: Sequence[str] | Sequence[Sequence[int]] | None = None,
    *,
    rank_by: str = "mean",
    attribution: bool = False,
    tuned_responses: Sequence[str] | Sequence[Sequence[int]] | None = None,
    max_new_tokens: int = 48,
    chat: bool | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> DiffResult:
    """Rank the SAE's latents by their change from base to tuned over the same response tokens.

    Args:
        base: the model before fine-tuning.
        tuned: the fine-tuned model (same tokenizer and shapes as base).
        sae: the SAE both models are read through (trained on base).
        prompts: the prompts whose answers are compared.
        responses: one per prompt, as text or as token ids (e.g. a previous result's response_ids);
            None = the base model's greedy answers (max_new_tokens each).
        rank_by: "mean" (mean activation change), "freq" (firing-frequency change), "effect" or "attribution".
        attribution: also score every latent over the tuned model's answers (implied by rank_by="attribution").
        tuned_responses: the tuned model's answers for attribution (default its greedy answers).
        max_new_tokens: the answer length when answers are generated.
        chat: wrap prompts in the chat template (default: when the tokenizer has one).
        batch_size: rows per forward pass.
        progress: show a progress bar.

    Returns:
        A DiffResult: every latent's change, ranked, with the prompts and response tokens used.
    """
    prompts = [p for p in prompts]
    if not prompts or not any(isinstance(p, str) and p.strip() for p in prompts):
        raise SteerlabError("The prompt set is empty; give at least one prompt.")
    if rank_by not in RANK_KEYS:
        raise SteerlabError(f"Unknown ranking '{rank_by}'; choose one of: {', '.join(RANK_KEYS)}.")
    for given in (responses, tuned_responses):
        if given is not None and len(given) != len(prompts):
            raise SteerlabError(f"Got {len(prompts)} prompts but {len(given)} responses; give one response per prompt.")
    check_pair(base, tuned, sae)
    attribution = attribution or rank_by == "attribution"
    prompt_ids = [base.encode(p, chat=chat) for p in prompts]
    response_ids, texts = _resolve_responses(base, prompts, responses, max_new_tokens, chat, batch_size, progress)
    keep = [i for i, r in enumerate(response_ids) if r]
    if not keep:
        raise SteerlabError(
            "Every response is empty, so there are no response tokens to compare; raise --max-new-tokens or give responses."
        )
    stats = {name: _Stats(sae.d_sae, sae.d_in) for name in ("base", "tuned")}
    with progress_bar(progress) as bar:
        task = bar.add_task("diffing", total=2 * len(keep), info="")
        for name, model in (("base", base), ("tuned", tuned)):
            for start in range(0, len(keep), batch_size):
                idx = keep[start : start + batch_size]
                acts = response_activations(
                    model, [prompt_ids[i] for i in idx], [response_ids[i] for i in idx], sae.layer, sae.site, batch_size
                )
                for x in acts:
                    stats[name].add(x.to(sae.W_enc.device), sae)
                bar.advance(task, len(acts))
    attr, tuned_ids, tuned_texts = None, [], []
    if attribution:
        from steerlab.persona.attribution import attribution_scores

        tuned_ids, tuned_texts = _resolve_responses(
            tuned, prompts, tuned_responses, max_new_tokens, chat, batch_size, progress
        )
        scored = [i for i, r in enumerate(tuned_ids) if r]
        if not scored:
            raise SteerlabError(
                "The tuned model gave only empty answers, so there is nothing to attribute; raise --max-new-tokens."
            )
        attr = attribution_scores(
            base,
            tuned,
            sae,
            [prompt_ids[i] for i in scored],
            [tuned_ids[i] for i in scored],
            batch_size=min(batch_size, 4),
            progress=progress,
        )
    sb, st = stats["base"], stats["tuned"]
    delta_mean = st.mean() - sb.mean()
    delta_freq = st.freq() - sb.freq()
    pooled = ((sb.var() + st.var()) / 2).sqrt()
    effect = torch.where(pooled > 0, delta_mean / pooled.clamp(min=1e-12), torch.zeros_like(delta_mean))
    key = {"mean": delta_mean, "freq": delta_freq, "effect": effect, "attribution": attr}[rank_by]
    # Stable order: by key descending, ties broken by latent id.
    order = sorted(range(sae.d_sae), key=lambda i: (-float(key[i]), i))
    rows = [
        LatentChange(
            rank=r + 1,
            latent=i,
            mean_base=float(sb.mean()[i]),
            mean_tuned=float(st.mean()[i]),
            delta_mean=float(delta_mean[i]),
            freq_base=float(sb.freq()[i]),
            freq_tuned=float(st.freq()[i]),
            delta_freq=float(delta_freq[i]),
            effect_size=float(effect[i]),
            attribution=None if attr is None else float(attr[i]),
        )
        for r, i in enumerate(order)
    ]
    return DiffResult(
        latents=rows,
        rank_by=rank_by,
        layer=sae.layer,
        site=sae.site,
        base=base.name,
        tuned=tuned.name,
        sae=sae.source,
        n_prompts=len(keep),
        n_tokens=sb.n,
        fvu_base=sb.fvu(),
        fvu_tuned=st.fvu(),
        median_norm_base=sb.median_norm(),
        median_norm_tuned=st.median_norm(),
        prompts=[prompts[i] for i in keep],
        responses=[texts[i] for i in keep],
        response_ids=[response_ids[i] for i in keep],
        tuned_responses=tuned_texts,
        tuned_response_ids=tuned_ids,
    )
