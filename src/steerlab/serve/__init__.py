"""An OpenAI-compatible HTTP server (FastAPI + uvicorn) for a local, optionally steered, model."""

from steerlab.serve.app import ServerConfig
from steerlab.serve.backend import Backend, GenRequest, GenResult, HFBackend, SamplingParams
from steerlab.serve.server import RunningServer, is_loopback, make_server, serve_forever, start_server

__all__ = [
    "Backend",
    "GenRequest",
    "GenResult",
    "HFBackend",
    "RunningServer",
    "SamplingParams",
    "ServerConfig",
    "is_loopback",
    "make_server",
    "serve_forever",
    "start_server",
]
