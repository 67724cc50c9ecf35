"""The server's model-facing side: a small Backend interface and the default hf engine behind it.

The HTTP layer only ever talks to a Backend: it counts prompt tokens (to refuse a prompt longer than the
context), validates interventions, and generates a batch of requests, optionally streaming text as it is
decoded. Another engine (vLLM) plugs in by implementing the same four members.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from steerlab.interventions.hooks import Session
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model, Prompt


@dataclass(frozen=True)
class SamplingParams:
    """Settings that must be equal for requests to share a forward pass (the seed is per request)."""

    chat: bool
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()


@dataclass
class GenRequest:
    """One request for the backend: a prompt (text or chat messages), its steering, sampling and seed."""

    prompt: Prompt
    params: SamplingParams
    interventions: Sequence[Intervention] = ()
    seed: int = 0


@dataclass
class GenResult:
    """What the server reports for one request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


# on_text(i, delta): the next piece of request i's text (may be empty); returns True when request i is cancelled.
TextCallback = Callable[[int, str], bool]


class Backend(Protocol):
    """What the server needs from an engine."""

    name: str
    context_length: int

    def count_prompt_tokens(self, prompt: Prompt, chat: bool) -> int:
        """Tokens the prompt becomes (chat template applied when chat is true); thread-safe."""
        ...

    def check_interventions(self, interventions: Sequence[Intervention]) -> None:
        """Raise SteerlabError (one sentence) if the interventions do not fit this model."""
        ...

    def generate(self, requests: Sequence[GenRequest], on_text: TextCallback | None = None) -> list[GenResult]:
        """Generate every request (all share one SamplingParams); with on_text, stream each row's text as decoded.

        The streamed pieces of a row, joined, equal its result's text. Called from one worker thread only.
        """
        ...


def context_length(model: Model) -> int:
    """The longest sequence (prompt + generated tokens) the model's positions allow."""
    cfg = model.hf.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(model.tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


class _RowText:
    """Incremental detokenisation of one row: emits only text that later tokens cannot change."""

    def __init__(self, tokenizer, hold: int):
        self.tokenizer, self.hold = tokenizer, hold
        self.ids: list[int] = []
        self.sent = ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a multi-byte character not finished yet
            return ""
        safe = text[: max(len(self.sent), len(text) - self.hold)]
        if not safe.startswith(self.sent) or len(safe) == len(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta

    def finish(self, final: str) -> str:
        """The rest of the final text (it starts with what was sent: stop strings are held back)."""
        if final.startswith(self.sent):
            delta, self.sent = final[len(self.sent) :], final
            return delta
        return ""


class HFBackend:
    """The default backend: steerlab's own batched, KV-cached hf engine (the fp32 oracle)."""

    def __init__(self, model: Model, name: str | None = None):
        self.model = model
        self.name = name or model.name
        self.context_length = context_length(model)
        # A private tokenizer copy for counting on request threads: HF fast tokenizers must not be shared across threads.
        self._counter = dataclasses.replace(model, tokenizer=copy.deepcopy(model.tokenizer))
        self._count_lock = threading.Lock()

    @property
    def has_chat_template(self) -> bool:
        return self.model.has_chat_template

    def count_prompt_tokens(self, prompt: Prompt, chat: bool) -> int:
        with self._count_lock:
            return len(self._counter.encode(prompt, chat=chat))

    def check_interventions(self, interventions: Sequence[Intervention]) -> None:
        Session(self.model, list(interventions))

    def generate(self, requests: Sequence[GenRequest], on_text: TextCallback | None = None) -> list[GenResult]:
        from steerlab.engine.generate import generate

        p = requests[0].params
        shared = all(r.interventions is requests[0].interventions for r in requests)
        ivs = list(requests[0].interventions) if shared else [list(r.interventions) for r in requests]
        hold = max((len(s) for s in p.stop), default=0)
        rows = [_RowText(self.model.tokenizer, hold) for _ in requests]

        def on_step(indices: list[int], tokens: list[int]) -> list[int]:
            cancelled = []
            for i, token in zip(indices, tokens):
                if token in self.model.stop_token_ids:
                    continue
                if on_text(i, rows[i].add(token)):  # an empty piece still lets the server cancel the row
                    cancelled.append(i)
            return cancelled

        gens = generate(
            self.model,
            [r.prompt for r in requests],
            ivs,
            max_new_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            repetition_penalty=p.repetition_penalty,
            stop=p.stop,
            seed=[r.seed for r in requests],
            chat=p.chat,
            batch_size=len(requests),
            on_step=None if on_text is None else on_step,
        )
        out = []
        for i, gen in enumerate(gens):
            if on_text is not None:
                rest = rows[i].finish(gen.text)
                if rest:
                    on_text(i, rest)
            reason = "length" if gen.finish_reason == "length" else "stop"
            out.append(GenResult(gen.text, len(gen.prompt_ids), len(gen.token_ids), reason))
        return out
