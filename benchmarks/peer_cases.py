"""The benchmark cases: each builds its model once and returns batch -> a callable that generates and returns token rows.

Every callable produces exactly `new_tokens` tokens per row, greedily, from the same left-padded
prompt ids, and returns the new token ids (list of lists) so the runs can be checked against each other.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Work = dict[str, Any]
Maker = Callable[[int], Callable[[], list[list[int]]]]

# Cases that need an optional peer package: case -> importable module name.
PEER_CASES = {
    "tl_bridge": "transformer_lens",
    "nnsight": "nnsight",
    "nnsight_rows": "nnsight",
    "vllm_unsteered": "vllm",
    "vllm_steered": "vllm",
    "vllm_rows": "vllm",
}


# Cases run in one process, sharing its loaded model (and, for vLLM, its engine), so that every case fits in
# memory at once on a 24 GiB machine: cases of one library that hold the same weights and differ only in the call.
# The peak RSS of each is still that case's own calls' (VmHWM is reset before every timed call); the vLLM
# engine reserves its memory up front, so its cases have one figure. Every other case has a process of its own.
SHARED_PROCESS = [
    ("steerlab_steered", "steerlab_steered_prefill", "steerlab_unsteered"),
    ("steerlab_rows", "steerlab_rows_prefill"),
    ("nnsight", "nnsight_rows"),
    ("vllm_unsteered", "vllm_steered", "vllm_rows"),
]

_LOADED: dict[str, Any] = {}


def shared(key: str, build: Callable[[], Any]) -> Any:
    """What `build` returns, built once per process (cases sharing a process share their model)."""
    if key not in _LOADED:
        _LOADED[key] = build()
    return _LOADED[key]


def load_workload(path) -> Work:
    return torch.load(path, weights_only=False)


def _padded(work: Work, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask, as steerlab.engine.forward.left_pad builds them (not imported: the
    TransformerLens case runs in a venv without steerlab)."""
    rows = work["ids"][:batch]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), work["pad_id"], dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def _hf_model(work: Work):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(work["model_dir"], dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(work["model_dir"])
    return hf, tok


def _gen_kwargs(work: Work) -> dict[str, Any]:
    n = work["new_tokens"]
    return {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "pad_token_id": work["pad_id"]}


def _adder(delta: torch.Tensor):
    """A forward hook that adds `delta` ([d] or [B, d]) to a decoder layer's output at every position."""
    delta = delta if delta.ndim == 1 else delta.unsqueeze(1)

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + delta,) + tuple(output[1:])
        return output + delta

    return hook


# --- plain transformers -------------------------------------------------------------------------------
def hf_generate(work: Work, steer: bool = False) -> Maker:
    hf, _ = _hf_model(work)

    def make(batch: int):
        ids, mask = _padded(work, batch)

        @torch.inference_mode()
        def run():
            handle = hf.model.layers[work["layer"]].register_forward_hook(_adder(work["vector"])) if steer else None
            try:
                out = hf.generate(input_ids=ids, attention_mask=mask, **_gen_kwargs(work))
            finally:
                if handle is not None:
                    handle.remove()
            return out[:, ids.shape[1] :].tolist()

        return run

    return make


def full_forward(work: Work) -> Maker:
    """The limit each case is measured against: one plain forward over [batch, new_tokens] tokens (no cache, no loop).

    Its tok/s is the model's compute throughput at that batch; decoding the same number of tokens costs more.
    """
    hf, _ = _hf_model(work)
    n = work["new_tokens"]

    def make(batch: int):
        rows = [(list(work["ids"][i]) * n)[-n:] for i in range(batch)]  # n real tokens per row (repeated if short)
        ids = torch.tensor(rows, dtype=torch.long)

        @torch.inference_mode()
        def run():
            logits = hf(input_ids=ids, use_cache=False).logits
            return logits.argmax(-1).tolist()

        return run

    return make


def hf_hook(work: Work) -> Maker:
    return hf_generate(work, steer=True)


def hook_loop_rows(work: Work) -> Maker:
    """How plain-hook (and TransformerLens) users run many configurations: one generate + hook per configuration."""
    hf, _ = _hf_model(work)
    layer = hf.model.layers[work["layer"]]

    def make(batch: int):
        rows = [_padded({**work, "ids": [work["ids"][i]]}, 1) for i in range(batch)]

        @torch.inference_mode()
        def run():
            out = []
            for i, (ids, mask) in enumerate(rows):
                handle = layer.register_forward_hook(_adder(work["row_vectors"][i]))
                try:
                    gen = hf.generate(input_ids=ids, attention_mask=mask, **_gen_kwargs(work))
                finally:
                    handle.remove()
                out.append(gen[0, ids.shape[1] :].tolist())
            return out

        return run

    return make


# --- TransformerLens ------------------------------------------------------------------------------------
def tl_bridge(work: Work) -> Maker:
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(work["model_dir"], device="cpu", dtype=torch.float32)
    vector = work["vector"]
    name = f"blocks.{work['layer']}.hook_resid_post"

    def add(resid, hook):
        return resid + vector

    def make(batch: int):
        ids, mask = _padded(work, batch)

        @torch.inference_mode()
        def run():
            with bridge.hooks(fwd_hooks=[(name, add)]):
                out = bridge.generate(
                    ids,
                    attention_mask=mask,
                    max_new_tokens=work["new_tokens"],
                    do_sample=False,
                    stop_at_eos=False,
                    return_type="tokens",
                    verbose=False,
                )
            return out[:, ids.shape[1] :].tolist()

        return run

    return make


# --- nnsight ----------------------------------------------------------------------------------------------
def _nnsight_model(work: Work):
    from nnsight import LanguageModel

    def build():
        hf, tok = _hf_model(work)
        return LanguageModel(hf, tokenizer=tok)

    return shared("nnsight", build)


def nnsight_one(work: Work) -> Maker:
    lm = _nnsight_model(work)
    layer, vector = work["layer"], work["vector"]

    def make(batch: int):
        ids, mask = _padded(work, batch)
        inputs = {"input_ids": ids, "attention_mask": mask}

        def run():
            with lm.generate(**_gen_kwargs(work)) as tracer:
                with tracer.invoke(inputs):
                    for _ in tracer.all():
                        lm.model.layers[layer].output[:] += vector
                with tracer.invoke():
                    out = tracer.result.save()
            return out[:, ids.shape[1] :].tolist()

        return run

    return make


def nnsight_rows(work: Work) -> Maker:
    """nnsight's batched per-row steering: one invoke per configuration inside one generate trace."""
    lm = _nnsight_model(work)
    layer, vectors = work["layer"], work["row_vectors"]

    def make(batch: int):
        rows = [_padded({**work, "ids": [work["ids"][i]]}, 1) for i in range(batch)]
        width = max(len(work["ids"][i]) for i in range(batch))

        def run():
            with lm.generate(**_gen_kwargs(work)) as tracer:
                for i, (ids, mask) in enumerate(rows):
                    with tracer.invoke({"input_ids": ids, "attention_mask": mask}):
                        v = vectors[i]
                        for _ in tracer.all():
                            lm.model.layers[layer].output[:] += v
                with tracer.invoke():  # an empty invoke sees the whole batch
                    out = tracer.result.save()
            return out[:, width:].tolist()

        return run

    return make


# --- steerlab ---------------------------------------------------------------------------------------------
def bench_sae(model_name: str, which: str, d_model: int):
    """The default SAE of the packaged model, or (which="random") a random SAE of its recipe's shape."""
    from steerlab.sae import Sae, SaeConfig
    from steerlab.sae.default import default_sae, recipe

    if which == "default":
        return default_sae(model_name, train=False, progress=False)
    r = recipe(model_name).train
    return Sae.random(
        SaeConfig(d_in=d_model, d_sae=r.d_sae, activation=r.arch, k=r.k, layer=r.layer, site=r.site), seed=0
    )


def _steerlab(
    work: Work, interventions: Callable[[Any, Any, int], list], new_tokens: int | None = None, **speed: bool
) -> Maker:
    """steerlab's hf engine; `speed` switches engine speed paths (EngineOptions fields) for the side-by-side cases.

    new_tokens: tokens per row (default the workload's); 1 times the prompt's prefill and the first token alone.
    """
    import steerlab
    from steerlab.engine.options import EngineOptions

    model = shared("steerlab", lambda: steerlab.load(work["model"]))
    sae = shared("sae", lambda: bench_sae(work["model"], work.get("sae", "default"), model.arch.d_model))

    def make(batch: int):
        ivs = interventions(model, sae, batch)
        prompts = work["prompts"][:batch]

        def run():
            gens = steerlab.generate(
                model,
                prompts,
                ivs,
                max_new_tokens=new_tokens or work["new_tokens"],
                ignore_eos=True,
                batch_size=batch,
                engine_options=EngineOptions(**speed),
            )
            return [g.token_ids for g in gens]

        return run

    return make


def steerlab_unsteered(work: Work) -> Maker:
    return _steerlab(work, lambda model, sae, b: [])


def steerlab_steered(work: Work) -> Maker:
    import steerlab

    return _steerlab(work, lambda model, sae, b: [steerlab.AddVector(work["layer"], work["vector"])])


def steerlab_steered_sdpa(work: Work) -> Maker:
    """steerlab_steered with the direct decode step off: decode steps through transformers' SDPA attention."""
    import steerlab

    return _steerlab(
        work, lambda model, sae, b: [steerlab.AddVector(work["layer"], work["vector"])], direct_decode=False
    )


def steerlab_steered_prefill(work: Work) -> Maker:
    """steerlab_steered stopped after the first token: the prompt's prefill, which a plain full forward never does."""
    import steerlab

    return _steerlab(work, lambda model, sae, b: [steerlab.AddVector(work["layer"], work["vector"])], new_tokens=1)


def steerlab_rows(work: Work) -> Maker:
    import steerlab

    return _steerlab(
        work,
        lambda model, sae, b: [
            steerlab.SteerLatent(sae, latent=work["latents"][:b], strength=work["strengths"][:b], layer=work["layer"])
        ],
    )


def steerlab_rows_prefill(work: Work) -> Maker:
    """steerlab_rows stopped after the first token: per-row steering cannot share the prompt prefix's upper layers."""
    import steerlab

    return _steerlab(
        work,
        lambda model, sae, b: [
            steerlab.SteerLatent(sae, latent=work["latents"][:b], strength=work["strengths"][:b], layer=work["layer"])
        ],
        new_tokens=1,
    )


def steerlab_ablate26(work: Work) -> Maker:
    import steerlab

    return _steerlab(work, lambda model, sae, b: [steerlab.AblateLatents(sae, work["ablate"])])


# --- vLLM (the .venv-vllm interpreter: --vllm-python) -------------------------------------------------------
def _vllm(work: Work, interventions: Callable[[int], list]) -> Maker:
    import os

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the parent reads this child's pipes only for replies
    from steerlab.engine.vllm_backend import VllmBackend

    n = max(32, len(work["ids"]))
    backend = shared(
        "vllm",
        lambda: VllmBackend(
            work["model_dir"], dtype="float32", max_num_seqs=n, max_model_len=512, kv_cache_memory_bytes=1 << 30
        ),
    )

    def make(batch: int):
        ids, ivs = work["ids"][:batch], interventions(batch)

        def run():
            return [r[0] for r in backend.generate(ids, ivs, max_new_tokens=work["new_tokens"], ignore_eos=True)]

        return run

    return make


def vllm_unsteered(work: Work) -> Maker:
    return _vllm(work, lambda b: [])


def vllm_steered(work: Work) -> Maker:
    from steerlab.interventions.specs import AddVector

    return _vllm(work, lambda b: [AddVector(work["layer"], work["vector"])])


def vllm_rows(work: Work) -> Maker:
    """The per-row ESR workload on vLLM: each row its own SAE-latent delta (the same deltas as steerlab_rows)."""
    from steerlab.interventions.specs import AddVector

    return _vllm(work, lambda b: [AddVector(work["layer"], work["row_vectors"][:b])])


CASES: dict[str, Callable[[Work], Maker]] = {
    "hf_generate": hf_generate,
    "hf_hook": hf_hook,
    "tl_bridge": tl_bridge,
    "nnsight": nnsight_one,
    "steerlab_unsteered": steerlab_unsteered,
    "steerlab_steered": steerlab_steered,
    "steerlab_steered_sdpa": steerlab_steered_sdpa,
    "steerlab_steered_prefill": steerlab_steered_prefill,
    "steerlab_rows": steerlab_rows,
    "steerlab_rows_prefill": steerlab_rows_prefill,
    "steerlab_ablate26": steerlab_ablate26,
    "nnsight_rows": nnsight_rows,
    "hook_loop_rows": hook_loop_rows,
    "full_forward": full_forward,
    "vllm_unsteered": vllm_unsteered,
    "vllm_steered": vllm_steered,
    "vllm_rows": vllm_rows,
}
