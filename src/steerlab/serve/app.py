"""The OpenAI-compatible routes (FastAPI): /v1/models, /v1/chat/completions, /v1/completions, /health.

Streaming answers are server-sent events, one chunk per decoded piece of text, then a finish chunk,
an optional usage chunk (`stream_options.include_usage`) and `data: [DONE]`. A client that disconnects
cancels its job. Steering given at start-up applies to every request; a request may add its own (or
replace them with `"replace": true`) in the `steerlab` field (see serve.protocol).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from steerlab.errors import SteerlabError
from steerlab.interventions.specs import Intervention
from steerlab.sae.core import Sae
from steerlab.serve.backend import Backend, GenRequest, GenResult, SamplingParams
from steerlab.serve.batcher import Batcher, Job, QueueFull
from steerlab.serve.protocol import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    client_interventions,
    error_body,
    message_text,
    sae_resolver,
    validation_message,
)


@dataclass
class ServerConfig:
    """Everything a server is started with (the API key is held in memory only, never logged)."""

    model_id: str
    interventions: Sequence[Intervention] = ()
    saes: dict[str, Sae] = field(default_factory=dict)  # the allow-list clients may name
    api_key: str | None = None
    max_tokens_limit: int = 2048
    default_max_tokens: int = 256
    request_timeout: float = 600.0  # seconds a request may wait for its whole answer
    max_body: int = 1 << 20
    body_timeout: float = 10.0  # seconds for each piece of a request body
    head_timeout: float = 10.0  # seconds for a request line and headers
    max_queue: int = 256  # waiting jobs; more answer 503
    max_connections: int = 512  # open connections; more answer 503
    verbose: bool = False


def build_app(backend: Backend, config: ServerConfig, batcher: Batcher) -> FastAPI:
    """The FastAPI app for one backend (the Guard middleware is wrapped around it by the server)."""
    app = FastAPI(title="steerlab", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())
    resolve_sae = sae_resolver(config.saes)
    backend.check_interventions(list(config.interventions))  # a bad start-up spec fails before serving

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message, exc.kind, exc.code), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(400, validation_message(exc.errors())), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {
            404: "No such route; this server answers /v1/models, /v1/chat/completions and /v1/completions.",
            405: "This route does not take that method.",
        }
        message = messages.get(exc.status_code, "The request could not be read.")
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:  # never a traceback or a path to clients
        return JSONResponse(error_body(500, "The server failed on this request.", "server_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": config.model_id, "object": "model", "created": created, "owned_by": "steerlab"}],
        }

    def interventions(req) -> Sequence[Intervention]:
        if req.steerlab is None or req.steerlab.interventions is None:
            return config.interventions  # the same object for every such request: batches share it
        try:
            own = client_interventions(req.steerlab.interventions, resolve_sae)
            ivs = own if req.steerlab.replace else [*config.interventions, *own]
            backend.check_interventions(ivs)
        except SteerlabError as exc:
            raise ApiError(400, f"Bad steerlab.interventions: {exc}") from None
        return ivs

    def sampling(req, chat: bool) -> SamplingParams:
        if req.model not in (None, "", config.model_id):
            raise ApiError(404, f"This server serves '{config.model_id}' only.", code="model_not_found")
        if req.frequency_penalty or req.presence_penalty:
            raise ApiError(400, "frequency_penalty and presence_penalty are not supported; use repetition_penalty.")
        max_tokens = req.max_completion_tokens or req.max_tokens or 0  # 0: the default, fitted to the context later
        if max_tokens > config.max_tokens_limit:
            raise ApiError(400, f"'max_tokens' must be at most {config.max_tokens_limit}.")
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        if len(stop) > 4 or not all(0 < len(s) <= 64 for s in stop):
            raise ApiError(400, "'stop' takes at most 4 strings of 1 to 64 characters.")
        return SamplingParams(
            chat,
            max_tokens,
            1.0 if req.temperature is None else req.temperature,
            1.0 if req.top_p is None else req.top_p,
            1.0 if req.repetition_penalty is None else req.repetition_penalty,
            stop,
        )

    async def fit_context(prompt: Any, params: SamplingParams) -> SamplingParams:
        """Refuse a prompt that, with max_tokens, overflows the context; an unset max_tokens takes what is left."""
        try:
            n = await asyncio.to_thread(backend.count_prompt_tokens, prompt, params.chat)
        except SteerlabError as exc:
            raise ApiError(400, str(exc)) from None
        if not params.max_tokens:
            params = dataclasses.replace(
                params, max_tokens=max(1, min(config.default_max_tokens, backend.context_length - n))
            )
        if n + params.max_tokens > backend.context_length:
            raise ApiError(
                400,
                f"The prompt is {n} tokens and max_tokens is {params.max_tokens}: together more than this "
                f"model's context of {backend.context_length} tokens; shorten the prompt or lower max_tokens.",
                code="context_length_exceeded",
            )
        return params

    async def submit(req, prompt: Any, chat: bool) -> Job:
        params = sampling(req, chat)
        ivs = interventions(req)
        params = await fit_context(prompt, params)
        job = Job(GenRequest(prompt, params, ivs, req.seed or 0), asyncio.get_running_loop())
        try:
            batcher.submit(job)
        except QueueFull:
            raise ApiError(503, "The server is busy (its queue is full); retry shortly.", "server_error") from None
        return job

    async def answer(request: Request, req, prompt: Any, chat: bool):
        job = await submit(req, prompt, chat)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if req.stream:
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                _events(job, rid, chat, usage, config),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        result = await _wait(request, job, config.request_timeout)
        choice = (
            {"message": {"role": "assistant", "content": result.text}}
            if chat
            else {"text": result.text, "logprobs": None}
        )
        return {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": config.model_id,
            "choices": [{"index": 0, **choice, "finish_reason": result.finish_reason}],
            "usage": _usage(result),
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, req: ChatRequest):
        if not getattr(backend, "has_chat_template", True):
            raise ApiError(400, f"Model '{config.model_id}' has no chat template; use /v1/completions.")
        convo = [
            {"role": "system" if m.role == "developer" else m.role, "content": message_text(m.content)}
            for m in req.messages
        ]
        return await answer(request, req, convo, True)

    @app.post("/v1/completions")
    async def completions(request: Request, req: CompletionRequest):
        return await answer(request, req, req.prompt, False)

    return app


def _usage(result: GenResult) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _failure(exc: BaseException) -> ApiError:
    if isinstance(exc, SteerlabError):
        return ApiError(400, str(exc))
    return ApiError(500, "Generation failed on this request.", "server_error")


async def _wait(request: Request, job: Job, timeout: float) -> GenResult:
    """Await a job's result, cancelling it when the client disconnects or the time runs out."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(job.events.get(), 0.25)
            except asyncio.TimeoutError as waited:
                if await request.is_disconnected():
                    job.cancel()
                    raise ApiError(499, "The client closed the request.") from waited
                if time.monotonic() > deadline:
                    job.cancel()
                    raise ApiError(
                        503, "The answer did not finish in time; the server is overloaded.", "server_error"
                    ) from None
                continue
            if kind == "done":
                return payload
            if kind == "error":
                raise _failure(payload)
    except asyncio.CancelledError:
        job.cancel()
        raise


async def _events(job: Job, rid: str, chat: bool, usage: bool, config: ServerConfig) -> AsyncIterator[str]:
    """Server-sent events for one job; leaving early (client gone) cancels the job."""
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choice: dict | None, extra: dict | None = None) -> str:
        body = {
            "id": rid,
            "object": kind,
            "created": created,
            "model": config.model_id,
            "choices": [] if choice is None else [{"index": 0, **choice}],
            **(extra or {}),
        }
        return f"data: {json.dumps(body)}\n\n"

    def piece(text: str, first: bool) -> dict:
        if chat:
            return {
                "delta": {"role": "assistant", "content": text} if first else {"content": text},
                "finish_reason": None,
            }
        return {"text": text, "logprobs": None, "finish_reason": None}

    deadline = time.monotonic() + config.request_timeout
    first = True
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                job.cancel()
                yield f"data: {json.dumps(error_body(503, 'The answer did not finish in time.', 'server_error'))}\n\n"
                return
            try:
                kind_, payload = await asyncio.wait_for(job.events.get(), remaining)
            except asyncio.TimeoutError:
                continue
            if kind_ == "text":
                yield chunk(piece(payload, first))
                first = False
            elif kind_ == "error":
                err = _failure(payload)
                yield f"data: {json.dumps(error_body(err.status, err.message, err.kind))}\n\n"
                return
            else:
                result: GenResult = payload
                if first and chat:
                    yield chunk(piece("", True))
                end = {"delta": {}} if chat else {"text": "", "logprobs": None}
                yield chunk({**end, "finish_reason": result.finish_reason})
                if usage:
                    yield chunk(None, {"usage": _usage(result)})
                yield "data: [DONE]\n\n"
                return
    finally:
        job.cancel()  # a no-op once finished; stops decoding when the client left mid-stream
