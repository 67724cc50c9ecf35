"""vLLM backend (optional extra, GPU): the same intervention specs applied inside vLLM's workers, per request.

Written against vLLM's documented V1 APIs (`LLM(enforce_eager=True, enable_prefix_caching=False)`,
`SamplingParams.extra_args`, `LLM.collective_rpc`) and not yet run: no GPU and no vLLM install were
available where it was written. The hf backend in fp32 stays the oracle; `oracle_agreement` checks this
one against it (top-1 agreement on greedy decoding).

How a request gets its own steering: the driver compiles the batched interventions into one plan
(per decoder layer: a [B, d] delta table and SAE clamps with [B, U] masks), sends it to every worker,
and tags request i with `extra_args={"steerlab_row": i}`. A forward hook on each edited decoder layer
maps every scheduled token to its request's row (from the attention metadata's `query_start_loc` and
the runner's request order) and edits the true residual stream (vLLM layers return the pair
(hidden, residual) whose sum is the stream). Eager mode keeps the hooks running on every step; prefix
caching is off because cached K/V would carry another request's steering.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.interventions.specs import AddVector, ClampLatents, Intervention, Record, SteerLatent
from steerlab.sae import Sae

ROW_KEY = "steerlab_row"


def require_vllm():
    try:
        import vllm
    except ImportError:
        raise SteerlabError("The vllm backend needs vLLM on a GPU machine: pip install 'steerlab[vllm]' (or use --backend hf).") from None
    return vllm


# --- the plan: plain tensors, built on the driver, shipped to every worker ----------------------------------
@dataclass
class LayerPlan:
    """Edits at one decoder layer's output (resid_post): a per-row delta table and per-row SAE clamps."""

    delta: torch.Tensor | None = None  # [B + 1, d]; the last row is zeros (tokens of untagged requests)
    clamps: list[tuple[Sae, torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (sae, latents, active, value)


def compile_plan(interventions: Sequence[Intervention], batch: int, n_layers: int) -> dict[int, LayerPlan]:
    """Batched steerlab interventions -> {layer: LayerPlan}; what vLLM cannot do gets one clear error."""
    plan: dict[int, LayerPlan] = {}
    for iv in interventions:
        if isinstance(iv, SteerLatent):
            iv = iv.as_add_vector()
        if isinstance(iv, Record):
            raise SteerlabError("Recording activations is not supported on the vllm backend yet; use --backend hf.")
        if getattr(iv, "positions", "all") != "all":
            raise SteerlabError(f"The vllm backend steers all positions only (got positions={iv.positions!r}); use --backend hf.")
        if isinstance(iv, AddVector):
            if iv.site != "resid_post":
                raise SteerlabError(f"The vllm backend edits resid_post only (got {iv.site}); use --backend hf.")
            _check_layer(iv.layer, n_layers)
            delta = iv.delta().float()
            delta = delta.reshape(-1, delta.shape[-1])
            delta = delta.expand(batch, -1) if delta.shape[0] == 1 else delta
            if delta.shape[0] != batch:
                raise SteerlabError(f"A per-row intervention has {delta.shape[0]} rows but there are {batch} requests.")
            layer = plan.setdefault(iv.layer, LayerPlan())
            table = torch.cat([delta, torch.zeros(1, delta.shape[1])])
            layer.delta = table if layer.delta is None else layer.delta + table
        elif isinstance(iv, ClampLatents):
            if iv.sae.site != "resid_post":
                raise SteerlabError(f"The vllm backend clamps SAEs on resid_post only (this SAE reads {iv.sae.site}).")
            _check_layer(iv.sae.layer, n_layers)
            latents = sorted({x for x in iv.flat_latents()})
            column = {x: i for i, x in enumerate(latents)}
            rows = iv.latents if iv.per_row else (iv.latents,) * batch
            values = iv.value.float().expand(batch) if iv.value.ndim == 0 else iv.value.float()
            active = torch.zeros(batch + 1, len(latents), dtype=torch.bool)
            value = torch.zeros(batch + 1, len(latents))
            for r, row in enumerate(rows):
                for x in row:
                    active[r, column[x]] = True
                    value[r, column[x]] = values[r]
            if latents:
                plan.setdefault(iv.sae.layer, LayerPlan()).clamps.append((iv.sae, torch.tensor(latents), active, value))
        else:
            raise SteerlabError(f"{type(iv).__name__} is not supported on the vllm backend yet; use --backend hf.")
    return plan


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise SteerlabError(f"Layer {layer} does not exist; the model has layers 0..{n_layers - 1}.")


def token_rows(query_start_loc: torch.Tensor, request_rows: torch.Tensor, n_tokens: int, none_row: int) -> torch.Tensor:
    """Row of every scheduled token: request i's tokens lie in [qsl[i], qsl[i+1]); padding tokens get none_row."""
    counts = (query_start_loc[1:] - query_start_loc[:-1]).long()
    rows = torch.repeat_interleave(request_rows.to(counts.device), counts)
    if rows.shape[0] < n_tokens:
        rows = torch.cat([rows, rows.new_full((n_tokens - rows.shape[0],), none_row)])
    return rows[:n_tokens]


def edit_layer_output(hidden: torch.Tensor, residual: torch.Tensor | None, plan: LayerPlan, rows: torch.Tensor) -> torch.Tensor:
    """The new `hidden` of a vLLM decoder layer output (hidden, residual) with the plan applied per token.

    The stream is hidden + residual; every edit is a delta on it, added to `hidden` so the pair still sums right.
    """
    stream = hidden if residual is None else hidden + residual
    delta = torch.zeros_like(stream, dtype=torch.float32)
    for sae, latents, active, value in plan.clamps:
        z = sae.encode_latents(stream.float(), latents.to(stream.device))  # [T, U]
        act, val = active.to(stream.device)[rows], value.to(stream.device)[rows]
        target = torch.where(act, val, z)
        delta = delta + sae.decode_delta(target - z, latents.to(stream.device)).float()
    if plan.delta is not None:
        delta = delta + plan.delta.to(stream.device)[rows]
    return hidden + delta.to(hidden.dtype)


# --- inside a vLLM worker (run through LLM.collective_rpc: `self` is the worker) -----------------------------
def _worker_set_plan(self, plan: dict[int, LayerPlan], batch: int) -> int:
    """Install (once) a hook on every planned layer and swap in this generate call's plan."""
    runner = self.model_runner
    model = runner.get_model() if hasattr(runner, "get_model") else runner.model
    state = getattr(runner, "_steerlab", None)
    if state is None:
        state = runner._steerlab = {"plan": {}, "batch": 0, "hooked": set(), "handles": []}
    layers = _decoder_layers(model)
    device = next(model.parameters()).device
    for lp in plan.values():
        lp.delta = None if lp.delta is None else lp.delta.to(device)
        lp.clamps = [(sae.to(device), lat.to(device), act.to(device), val.to(device)) for sae, lat, act, val in lp.clamps]
    state["plan"], state["batch"] = plan, batch
    for index in plan:
        if index not in state["hooked"]:
            state["handles"].append(layers[index].register_forward_hook(_make_hook(runner, index)))
            state["hooked"].add(index)
    return len(plan)


def _decoder_layers(model) -> Any:
    for path in ("model.layers", "language_model.model.layers", "transformer.h"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise SteerlabError(f"Cannot find the decoder layers of vLLM model {type(model).__name__}.")


def _make_hook(runner, index: int):
    def hook(module, args, output):
        state = runner._steerlab
        plan = state["plan"].get(index)
        if plan is None:
            return output
        hidden, residual = (output[0], output[1]) if isinstance(output, tuple) else (output, None)
        rows = _current_token_rows(runner, hidden.shape[0], state["batch"])
        new = edit_layer_output(hidden, residual, plan, rows)
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    return hook


def _current_token_rows(runner, n_tokens: int, batch: int) -> torch.Tensor:
    from vllm.forward_context import get_forward_context

    try:
        meta = get_forward_context().attn_metadata
        if isinstance(meta, dict):
            meta = next(iter(meta.values()))
        qsl = meta.query_start_loc
        n_reqs = qsl.shape[0] - 1
        req_ids = runner.input_batch.req_ids[:n_reqs]
        rows = [(runner.requests[r].sampling_params.extra_args or {}).get(ROW_KEY, batch) for r in req_ids]
    except (AttributeError, KeyError, StopIteration) as err:
        raise SteerlabError(f"This vLLM version lays out its batch differently ({err!r}); install the range "
                            "steerlab[vllm] pins.") from err
    return token_rows(qsl, torch.tensor(rows, device=qsl.device), n_tokens, none_row=batch)


# --- the driver side -------------------------------------------------------------------------------------------
class VllmBackend:
    """A vLLM engine for one model (eager, no prefix caching) that generates with per-request interventions."""

    def __init__(self, model_path: str, *, tensor_parallel_size: int = 1, dtype: str = "bfloat16",
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = None, seed: int = 0):
        vllm = require_vllm()
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # collective_rpc ships our functions
        os.environ.setdefault("VLLM_DISABLE_COMPILE_CACHE", "1")
        self.llm = vllm.LLM(model=model_path, tensor_parallel_size=tensor_parallel_size, dtype=dtype, enforce_eager=True,
                            enable_prefix_caching=False, gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len, seed=seed)
        self.n_layers = self.llm.llm_engine.model_config.hf_config.num_hidden_layers

    def generate(self, prompt_ids: Sequence[Sequence[int]], interventions: Sequence[Intervention] = (), *, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 seeds: Sequence[int] | None = None, stop_token_ids: Sequence[int] = ()) -> list[tuple[list[int], str, str]]:
        """(token ids, text, finish reason) per prompt; interventions are batched over the prompts as in steerlab.generate."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        batch = len(prompt_ids)
        plan = compile_plan(interventions, batch, self.n_layers)
        self.llm.collective_rpc(_worker_set_plan, args=(plan, batch))
        seeds = list(seeds) if seeds is not None else list(range(batch))
        params = [SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 repetition_penalty=repetition_penalty, seed=int(seeds[i]), stop_token_ids=list(stop_token_ids),
                                 extra_args={ROW_KEY: i}) for i in range(batch)]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params, use_tqdm=False)
        self.llm.collective_rpc(_worker_set_plan, args=({}, 0))  # no plan between calls: unsteered by default
        stops = set(stop_token_ids)
        result = []
        for out in outs:
            o = out.outputs[0]
            ids = list(o.token_ids)
            reason = "eos" if o.finish_reason == "stop" else "length"
            if ids and ids[-1] in stops:  # the hf backend keeps tokens up to, not including, the EOS
                ids = ids[:-1]
            result.append((ids, o.text, reason))
        return result


def oracle_agreement(oracle_rows: Sequence[Sequence[int]], other_rows: Sequence[Sequence[int]]) -> dict[str, float]:
    """Top-1 agreement on greedy decoding: the share of tokens before the first disagreement, and of identical rows."""
    prefix, total, same = 0, 0, 0
    for a, b in zip(oracle_rows, other_rows):
        n = max(len(a), len(b))
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefix, total, same = prefix + k, total + n, same + (list(a) == list(b))
    return {"token_agreement": prefix / total if total else 1.0, "identical_rows": same / max(1, len(oracle_rows))}


def check_against_oracle(model, backend: VllmBackend, prompts: Sequence[str], interventions: Sequence[Intervention] = (),
                         max_new_tokens: int = 32) -> dict[str, float]:
    """Greedy generation on the hf backend (the fp32 oracle: pass an fp32 model) and on vLLM; their agreement."""
    import steerlab

    oracle = steerlab.generate(model, list(prompts), list(interventions), max_new_tokens=max_new_tokens, ignore_eos=True)
    ids = [model.encode(p) for p in prompts]
    other = backend.generate(ids, interventions, max_new_tokens=max_new_tokens, temperature=0.0)
    return oracle_agreement([g.token_ids for g in oracle], [o[0] for o in other])


class VllmTrialRunner:
    """ESR trials on vLLM: batch -> store rows, with the same interventions as the hf path (generate_trials)."""

    def __init__(self, cfg, model, sae: Sae, **engine: Any):
        self.cfg, self.model, self.sae = cfg, model, sae
        self.backend = VllmBackend(str(model.hf.name_or_path), **engine)

    def __call__(self, trials) -> list:
        from steerlab.esr.trials import batch_interventions, sae_at_layer

        cfg = self.cfg
        layer = cfg.steer_layer if cfg.steer_layer is not None else self.sae.layer
        ablation_sae = sae_at_layer(self.sae, layer if cfg.ablation_layer == "steering" else None)
        ivs = batch_interventions(trials, self.sae, cfg.steer_layer, ablation_sae)
        ids = [self.model.encode(t.prompt) for t in trials]
        outs = self.backend.generate(ids, ivs, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                     repetition_penalty=cfg.repetition_penalty, seeds=[t.seed for t in trials],
                                     stop_token_ids=self.model.stop_token_ids)
        return [(t.key, text, ids_, reason, {"finish": reason, "backend": "vllm"}) for t, (ids_, text, reason) in zip(trials, outs)]
