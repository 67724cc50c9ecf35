"""`steerlab serve --backend vllm`: the server's Backend interface over the vLLM engine, with per-request steering."""

from __future__ import annotations

from typing import Sequence

from steerlab.engine.vllm_backend import VllmBackend, compile_plan
from steerlab.interventions.hooks import Session
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model
from steerlab.serve.backend import GenRequest, GenResult, HFBackend, TextCallback


class VllmServeBackend(HFBackend):
    """Requests batched by the server run as one vLLM generate call, each request with its own steering.

    The model, its name, context length and thread-safe prompt counting are the hf backend's; generation is vLLM's.

    vLLM's offline engine returns whole answers, so a streamed request gets its text in one piece at the end
    (the pieces still join to the result's text) and cannot be cancelled mid-answer.

    Args:
        model: the loaded steerlab model (tokenizer, validation; its folder is what vLLM loads).
        backend: an already started VllmBackend for that folder (default: start one, in the model's dtype).
    """

    def __init__(self, model: Model, name: str | None = None, backend: VllmBackend | None = None, **engine):
        super().__init__(model, name)
        dtype = str(model.dtype).removeprefix("torch.")
        self.engine = backend or VllmBackend(
            str(model.hf.name_or_path), dtype=dtype, max_model_len=min(self.context_length, 8192), **engine
        )

    def check_interventions(self, interventions: Sequence[Intervention]) -> None:
        """The hf checks (layers, widths, SAE fit), then what the vLLM backend can do (one sentence otherwise)."""
        ivs = list(interventions)
        Session(self.model, ivs)
        batch = max([iv.batch_size or 1 for iv in ivs] or [1])
        compile_plan(ivs, batch, self.engine.n_layers)

    def generate(self, requests: Sequence[GenRequest], on_text: TextCallback | None = None) -> list[GenResult]:
        p = requests[0].params
        ids = [self.model.encode(r.prompt, chat=p.chat) for r in requests]
        outs = self.engine.generate(
            ids,
            [list(r.interventions) for r in requests],
            max_new_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            repetition_penalty=p.repetition_penalty,
            seeds=[r.seed for r in requests],
            stop_token_ids=self.model.stop_token_ids,
            stop=p.stop,
        )
        results = []
        for i, (tokens, text, reason) in enumerate(outs):
            if on_text is not None and text:
                on_text(i, text)
            results.append(GenResult(text, len(ids[i]), len(tokens), "length" if reason == "length" else "stop"))
        return results
