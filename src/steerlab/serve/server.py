"""Run the OpenAI-compatible app on uvicorn: on a background thread (tests, notebooks) or in the foreground (CLI).

A server bound to anything but loopback requires an API key. Limits: the body cap, body and head
timeouts, the queue bound and the connection bound live in ServerConfig.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any, Sequence

import uvicorn

from steerlab.errors import SteerlabError
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model
from steerlab.sae.core import Sae
from steerlab.serve.app import ServerConfig, build_app
from steerlab.serve.backend import Backend, HFBackend
from steerlab.serve.batcher import Batcher
from steerlab.serve.guard import Guard, HeadTimeoutH11


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is served (a taken port is one sentence, not a log line)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise SteerlabError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --host or --port."
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class RunningServer:
    """A uvicorn server for one backend, started on a background thread; close() stops it."""

    def __init__(
        self, backend: Backend, config: ServerConfig, host: str, port: int, max_batch: int, batch_wait_s: float
    ):
        if not config.api_key and not is_loopback(host):
            raise SteerlabError(
                f"Binding to {host} exposes the server beyond this machine; set an API key (--api-key-env)."
            )
        self.backend, self.config = backend, config
        self._sock = _bind(host, port)
        self._port = self._sock.getsockname()[1]
        self.batcher = Batcher(backend, max_batch=max_batch, wait_s=batch_wait_s, max_queue=config.max_queue)
        try:
            app = Guard(build_app(backend, config, self.batcher), config.api_key, config.max_body, config.body_timeout)
        except BaseException:
            self.batcher.close()
            self._sock.close()
            raise
        protocol = type("GuardedH11", (HeadTimeoutH11,), {"head_timeout": config.head_timeout})
        self._uv = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                http=protocol,
                lifespan="off",
                access_log=config.verbose,
                log_level="info" if config.verbose else "warning",
                limit_concurrency=config.max_connections,
                timeout_keep_alive=5,
                timeout_graceful_shutdown=5,
                server_header=False,
            )
        )
        self._thread: threading.Thread | None = None

    def start(self) -> "RunningServer":
        """Serve on a background thread; returns once the socket listens (raises SteerlabError if it cannot)."""
        self._thread = threading.Thread(
            target=self._uv.run, kwargs={"sockets": [self._sock]}, name="steerlab-serve", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uv.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise SteerlabError(f"The server on {self.host}:{self.port} did not start.")
            time.sleep(0.01)
        return self

    def run(self) -> None:
        """Serve in the foreground until Ctrl-C (uvicorn handles the signal), then stop the worker."""
        try:
            self._uv.run(sockets=[self._sock])
        finally:
            self.batcher.close()
            self._sock.close()

    @property
    def host(self) -> str:
        return self._uv.config.host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def close(self) -> None:
        self._uv.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.batcher.close()
        self._sock.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_server(
    model: Model | Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    interventions: Sequence[Intervention] = (),
    *,
    model_id: str | None = None,
    api_key: str | None = None,
    saes: dict[str, Sae] | None = None,
    max_batch: int = 8,
    batch_wait_s: float = 0.02,
    **config: Any,
) -> RunningServer:
    """A server for a model (served by the hf engine) or any Backend, not yet started."""
    backend = HFBackend(model) if isinstance(model, Model) else model
    cfg = ServerConfig(model_id or backend.name, tuple(interventions), dict(saes or {}), api_key, **config)
    return RunningServer(backend, cfg, host, port, max_batch, batch_wait_s)


def start_server(
    model: Model | Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    interventions: Sequence[Intervention] = (),
    **kwargs: Any,
) -> RunningServer:
    """Serve on a background thread; port 0 picks a free port (see `.url`). Keyword options as make_server."""
    return make_server(model, host, port, interventions, **kwargs).start()


def serve_forever(server: RunningServer) -> None:
    """Serve in the foreground until Ctrl-C (a server already started on its thread is waited on, then closed)."""
    if server._thread is None:
        server.run()
        return
    try:
        while server._thread.is_alive():
            server._thread.join(timeout=3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
