"""Attribution ranking: which latents' change explains the tuned model's answers, to first order.

Teacher-force the TUNED model's own answers through both models. In the base model, the SAE layer's
activation x is rewritten as decode(z) + (x - decode(z)).detach(): the value is unchanged, but the
gradient of log p_base(answer) now reaches every latent z_i. A latent's score is
    sum over answer tokens of (z_tuned - z_base)_i x d log p_base(answer) / d z_i,
averaged per token: the attribution-patching estimate of how much patching that latent from the
tuned model into the base raises the base's log-probability of the tuned behaviour.
"""

from __future__ import annotations

from typing import Sequence

import torch

from steerlab.engine.scoring import ForcedBatch, forced_forward
from steerlab.models.loading import Model
from steerlab.persona.diff import response_activations
from steerlab.progress import progress_bar
from steerlab.sae.core import Sae
from steerlab.sae.evaluate import replace_site


def latent_gradients(
    model: Model, sae: Sae, prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per row: latents z [n_resp, d_sae] at the answer tokens and d(sum log p(answer))/dz there."""
    batch = ForcedBatch.of(model, [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)])
    input_ids, width = batch.input_ids, batch.input_ids.shape[1]
    store: dict = {}

    def rewrite(x: torch.Tensor) -> torch.Tensor:
        """Route the SAE site through a leaf tensor of latents (value-preserving) and keep it in store['z']."""
        z = sae.encode(x.detach()).detach().requires_grad_(True)
        recon = sae.decode(z)
        store["z"] = z
        return (recon + (x.to(recon.dtype) - recon).detach()).to(x.dtype)

    with torch.enable_grad(), replace_site(model, sae.layer, sae.site, rewrite):
        logits, _ = forced_forward(model, batch)
        logp = torch.log_softmax(logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        target = input_ids[:, 1:]
        token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        in_answer = torch.zeros_like(token_logp, dtype=torch.bool)
        for i, r in enumerate(response_ids):
            in_answer[i, width - 1 - len(r) :] = True  # logits at t-1 predict answer token t
        total = (token_logp * in_answer).sum()
        (grad,) = torch.autograd.grad(total, store["z"])
    z = store["z"].detach()
    zs = [z[i, width - len(r) :] for i, r in enumerate(response_ids)]
    gs = [grad[i, width - len(r) :] for i, r in enumerate(response_ids)]
    return zs, gs


def attribution_scores(
    base: Model,
    tuned: Model,
    sae: Sae,
    prompt_ids: Sequence[list[int]],
    response_ids: Sequence[list[int]],
    *,
    batch_size: int = 4,
    progress: bool = False,
) -> torch.Tensor:
    """Per-latent attribution [d_sae] (see module docstring), averaged over answer tokens; fp64."""
    total = torch.zeros(sae.d_sae, dtype=torch.float64)
    n = 0
    with progress_bar(progress) as bar:
        task = bar.add_task("attribution", total=len(prompt_ids), info="")
        for start in range(0, len(prompt_ids), batch_size):
            sl = slice(start, start + batch_size)
            z_base, grads = latent_gradients(base, sae, prompt_ids[sl], response_ids[sl])
            x_tuned = response_activations(tuned, prompt_ids[sl], response_ids[sl], sae.layer, sae.site, batch_size)
            for zb, g, xt in zip(z_base, grads, x_tuned):
                with torch.no_grad():
                    zt = sae.encode(xt.to(sae.W_enc.device))
                total += ((zt.double() - zb.double()) * g.double()).sum(0).cpu()
                n += len(zb)
            bar.advance(task, len(z_base))
    return total / max(n, 1)
