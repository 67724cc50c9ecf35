"""The OpenAI request shapes (pydantic), OpenAI-shaped error bodies, and the checks on client steering.

Clients may steer a request in an extra field: `"steerlab": {"interventions": [...], "replace": false}`.
Interventions are `Intervention.to_dict()` objects, except that an SAE is named, never located: `"sae": "NAME"`
(or `{"sae": "NAME"}`) picks one of the SAEs the server was started with (`--sae NAME=PATH`). `Record`
is refused (it returns nothing over HTTP and costs memory); counts of interventions, latents and numbers
are capped before anything is built.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from steerlab.errors import SteerlabError
from steerlab.interventions.specs import Intervention, Record, from_dict
from steerlab.sae.core import Sae


class ApiError(Exception):
    """An error answered as OpenAI-shaped JSON with an HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def error_body(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    """{"error": {message, type, param, code}} as OpenAI answers."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code or str(status)}}


_STRICT = ConfigDict(extra="ignore", allow_inf_nan=False)


class Steering(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    interventions: list[dict] | None = None
    replace: bool = False


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: bool = False


class _Common(BaseModel):
    model_config = _STRICT
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    n: int | None = Field(None, ge=1, le=1)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    steerlab: Steering | None = None


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict] | None = ""


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(..., min_length=1)


class CompletionRequest(_Common):
    prompt: str = Field(..., min_length=1)


def message_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")


def validation_message(errors: Sequence[dict]) -> str:
    """One sentence from pydantic's first error, naming the field (never echoing large input)."""
    if not errors:
        return "The request body is not valid."
    err = errors[0]
    where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
    if err.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    return f"'{where}': {err.get('msg', 'is not valid')}."


# --- client steering -------------------------------------------------------------------------------------------------

MAX_INTERVENTIONS = 16
MAX_LATENTS = 256  # latent ids over all of a request's interventions
MAX_NUMBERS = 1 << 17  # numbers in vectors, masks and fills over all of a request's interventions


def _count(value: Any, limit: int) -> int:
    """How many scalars a nested JSON list holds (stops counting past the limit)."""
    if isinstance(value, list):
        total = 0
        for item in value:
            total += _count(item, limit - total)
            if total > limit:
                break
        return total
    return 1


def _finite(value: Any, name: str) -> None:
    stack = [value]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, bool) or not isinstance(x, (int, float)):
            raise SteerlabError(f"'{name}' must hold only numbers.")
        elif not math.isfinite(x):
            raise SteerlabError(f"'{name}' must hold only finite numbers.")


def sae_resolver(saes: dict[str, Sae]) -> Callable[[Any], Sae]:
    """Look an SAE up by name in the start-up allow-list; anything else (a path, hf://...) is refused alike."""

    def resolve(ref: Any) -> Sae:
        name = ref.get("sae") if isinstance(ref, dict) else ref
        if isinstance(name, str) and name in saes:
            return saes[name]
        known = ", ".join(sorted(saes)) if saes else "none (start the server with --sae NAME=PATH)"
        raise SteerlabError(f"SAEs are named, not located: use one of this server's SAE names ({known}).")

    return resolve


def client_interventions(specs: list[dict], resolve_sae: Callable[[Any], Sae]) -> list[Intervention]:
    """Build a request's interventions after capping their size; raises SteerlabError (one sentence)."""
    if len(specs) > MAX_INTERVENTIONS:
        raise SteerlabError(f"A request may carry at most {MAX_INTERVENTIONS} interventions.")
    latents = numbers = 0
    built = []
    for spec in specs:
        if spec.get("type") == Record.__name__:
            raise SteerlabError(
                "Record is not available over HTTP; steer with AddVector, SteerLatent, ClampLatents or MaskUnits."
            )
        for key in ("latent", "latents"):
            if key in spec:
                latents += _count(spec[key], MAX_LATENTS)
        for key in ("vector", "mask", "fill", "strength", "value"):
            if key in spec and spec[key] is not None:
                numbers += _count(spec[key], MAX_NUMBERS)
                _finite(spec[key], key)
        if latents > MAX_LATENTS:
            raise SteerlabError(f"A request may name at most {MAX_LATENTS} latent ids over all its interventions.")
        if numbers > MAX_NUMBERS:
            raise SteerlabError(f"A request's interventions may hold at most {MAX_NUMBERS} numbers.")
        spec = dict(spec)
        if "sae" in spec:
            spec["sae"] = resolve_sae(spec["sae"])
        try:
            iv = from_dict(spec)
        except TypeError:
            raise SteerlabError(
                f"Intervention '{spec.get('type')}' got fields it does not take; send Intervention.to_dict() objects."
            ) from None
        if iv.batch_size is not None:
            raise SteerlabError("A request's interventions steer its one row: give no batch dimension.")
        built.append(iv)
    return built
