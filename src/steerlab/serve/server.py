"""An OpenAI-compatible HTTP server for a local, optionally steered, model (stdlib only).

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (`stream: true` sends
the whole answer as one server-sent event). Steering given at startup applies to every request; a
request may add interventions, or replace the startup ones, in an extra field:
`"steerlab": {"interventions": [<Intervention.to_dict()>...], "replace": false}`.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

from steerlab.errors import SteerlabError
from steerlab.interventions.hooks import Session
from steerlab.interventions.specs import Intervention, from_dict
from steerlab.models.loading import Model
from steerlab.serve.batcher import Batcher, Job, Sampling

MAX_BODY = 4 * 1024 * 1024


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with an HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


@dataclass
class ServerConfig:
    model_id: str
    interventions: Sequence[Intervention] = ()
    api_key: str | None = None  # the value itself; held in memory only, never logged
    max_tokens_limit: int = 2048
    default_max_tokens: int = 256
    request_timeout: float = 600.0
    resolve_sae: Callable[[str], Any] | None = None
    verbose: bool = False


def _number(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ApiError(400, f"'{name}' must be a number between {lo:g} and {hi:g}.")
    return float(value)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    raise ApiError(400, "Each message's 'content' must be a string or a list of text parts.")


class SteerServer:
    """The request logic, separate from the socket plumbing so it can be tested directly."""

    def __init__(self, model: Model, config: ServerConfig, max_batch: int = 8, batch_wait_s: float = 0.02):
        self.model = model
        self.config = config
        self.batcher = Batcher(model, max_batch=max_batch, wait_s=batch_wait_s)
        Session(model, list(config.interventions))  # a bad startup steering spec fails before serving
        self.created = int(time.time())

    def authorised(self, header: str | None) -> bool:
        if not self.config.api_key:
            return True
        token = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(token.encode(), self.config.api_key.encode())

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.config.model_id, "object": "model", "created": self.created, "owned_by": "steerlab"}]}

    def _interventions(self, body: dict) -> Sequence[Intervention]:
        extra = body.get("steerlab") or {}
        if not isinstance(extra, dict):
            raise ApiError(400, "'steerlab' must be an object like {\"interventions\": [...]}.")
        specs = extra.get("interventions")
        if specs is None:
            return self.config.interventions  # the same object for every such request: batches share it
        if not isinstance(specs, list):
            raise ApiError(400, "'steerlab.interventions' must be a list of intervention objects.")
        try:
            own = [from_dict(s, self.config.resolve_sae) for s in specs]
            ivs = own if extra.get("replace") else [*self.config.interventions, *own]
            Session(self.model, ivs)
        except (SteerlabError, TypeError, ValueError) as exc:
            raise ApiError(400, f"Bad steerlab.interventions: {exc}") from None
        return ivs

    def _sampling(self, body: dict, chat: bool) -> Sampling:
        if body.get("n", 1) != 1:
            raise ApiError(400, "Only n=1 is supported; send several requests instead.")
        max_tokens = body.get("max_completion_tokens")
        max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
        max_tokens = self.config.default_max_tokens if max_tokens is None else max_tokens
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= self.config.max_tokens_limit:
            raise ApiError(400, f"'max_tokens' must be an integer from 1 to {self.config.max_tokens_limit}.")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        if not all(isinstance(s, str) and s for s in stop):
            raise ApiError(400, "'stop' must be a string or a list of non-empty strings.")
        return Sampling(chat, max_tokens, _number(body, "temperature", 1.0, 0.0, 2.0), _number(body, "top_p", 1.0, 0.0, 1.0), stop)

    def _check_model(self, body: dict) -> None:
        name = body.get("model")
        if name not in (None, "", self.config.model_id):
            raise ApiError(404, f"The model '{name}' does not exist here; this server serves '{self.config.model_id}'.", "model_not_found")

    def _run(self, prompt: Any, sampling: Sampling, body: dict):
        seed = body.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ApiError(400, "'seed' must be an integer.")
        job = Job(prompt, sampling, self._interventions(body), seed)
        try:
            return self.batcher.submit(job, timeout=self.config.request_timeout)
        except SteerlabError as exc:
            raise ApiError(400, str(exc)) from None
        except TimeoutError:
            raise ApiError(503, "Generation timed out; the server is overloaded.", "server_error") from None

    def chat(self, body: dict) -> dict:
        self._check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects.")
        if not self.model.has_chat_template:
            raise ApiError(400, f"Model '{self.config.model_id}' has no chat template; use /v1/completions.")
        convo = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
                raise ApiError(400, "Each message needs a role of system, user or assistant.")
            role = "system" if m["role"] == "developer" else m["role"]
            convo.append({"role": role, "content": _message_text(m.get("content", ""))})
        gen = self._run(convo, self._sampling(body, chat=True), body)
        return self._reply(gen, "chat.completion", {"message": {"role": "assistant", "content": gen.text}})

    def completion(self, body: dict) -> dict:
        self._check_model(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be a non-empty string.")
        gen = self._run(prompt, self._sampling(body, chat=False), body)
        return self._reply(gen, "text_completion", {"text": gen.text})

    def _reply(self, gen, kind: str, choice: dict) -> dict:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        return {
            "id": f"{prefix}-{uuid.uuid4().hex[:24]}",
            "object": kind,
            "created": int(time.time()),
            "model": self.config.model_id,
            "choices": [{"index": 0, **choice, "finish_reason": "length" if gen.finish_reason == "length" else "stop"}],
            "usage": {"prompt_tokens": len(gen.prompt_ids), "completion_tokens": len(gen.token_ids),
                      "total_tokens": len(gen.prompt_ids) + len(gen.token_ids)},
        }

    def close(self) -> None:
        self.batcher.close()


def _handler(app: SteerServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "steerlab-serve"

        def log_message(self, fmt: str, *args: Any) -> None:  # request lines only; headers (keys) never
            if app.config.verbose:
                sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, err: ApiError) -> None:
            self._send(err.status, {"error": {"message": err.message, "type": err.kind, "code": err.status}})

        def _guard(self) -> bool:
            if app.authorised(self.headers.get("Authorization")):
                return True
            self._error(ApiError(401, "Invalid or missing API key.", "authentication_error"))
            return False

        def do_GET(self) -> None:
            if not self._guard():
                return
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, app.models())
            elif self.path.rstrip("/") in ("/health", ""):
                self._send(200, {"status": "ok", "model": app.config.model_id})
            else:
                self._error(ApiError(404, f"No route {self.path}."))

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise ApiError(413, "Request body too large.")
                raw = self.rfile.read(length)
                if not self._guard():
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise ApiError(400, "The request body is not valid JSON.") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "The request body must be a JSON object.")
                path = self.path.rstrip("/").removeprefix("/v1")
                if path == "/chat/completions":
                    reply = app.chat(body)
                elif path == "/completions":
                    reply = app.completion(body)
                else:
                    raise ApiError(404, f"No route {self.path}.")
                if body.get("stream"):
                    self._stream(reply)
                else:
                    self._send(200, reply)
            except ApiError as err:
                self._error(err)
            except Exception as exc:  # noqa: BLE001 - a server must answer, not die
                self._error(ApiError(500, f"{type(exc).__name__}: {exc}", "server_error"))

        def _stream(self, reply: dict) -> None:
            """The whole answer as one chunk, then the finish chunk and [DONE] (no token streaming)."""
            choice = reply["choices"][0]
            chat = reply["object"] == "chat.completion"
            kind = "chat.completion.chunk" if chat else "text_completion"
            first = {"index": 0, "delta": {"role": "assistant", "content": choice["message"]["content"]}} if chat else {"index": 0, "text": choice["text"]}
            last = {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]} if chat else {"index": 0, "text": "", "finish_reason": choice["finish_reason"]}
            events = [{**reply, "object": kind, "choices": [first]}, {**reply, "object": kind, "choices": [last]}]
            data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            payload = data.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-reply (a timed-out judge call) is normal, not a traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class RunningServer:
    """A server running on a background thread (for tests and notebooks); close() stops it."""

    def __init__(self, app: SteerServer, host: str, port: int):
        self.app = app
        self.httpd = _QuietServer((host, port), _handler(app))
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="steerlab-serve", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.app.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_server(
    model: Model,
    host: str = "127.0.0.1",
    port: int = 0,
    interventions: Sequence[Intervention] = (),
    *,
    model_id: str | None = None,
    api_key: str | None = None,
    max_batch: int = 8,
    batch_wait_s: float = 0.02,
    **config: Any,
) -> RunningServer:
    """Serve a model on a background thread; port 0 picks a free port (see `.url`)."""
    cfg = ServerConfig(model_id or model.name, tuple(interventions), api_key, **config)
    return RunningServer(SteerServer(model, cfg, max_batch=max_batch, batch_wait_s=batch_wait_s), host, port)


def serve_forever(server: RunningServer) -> None:
    """Block until Ctrl-C, then shut down cleanly."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
