"""An OpenAI-compatible HTTP server for a local, optionally steered, model."""

from steerlab.serve.server import RunningServer, ServerConfig, SteerServer, serve_forever, start_server

__all__ = ["RunningServer", "ServerConfig", "SteerServer", "serve_forever", "start_server"]
