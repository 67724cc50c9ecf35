"""`steerlab serve MODEL`: an OpenAI-compatible server for a local, optionally steered, model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from steerlab.errors import SteerlabError


def load_steering(path: Optional[Path]) -> list:
    """Interventions from a JSON file: one `Intervention.to_dict()` object or a list of them."""
    from steerlab.interventions.specs import from_dict

    if path is None:
        return []
    if not path.is_file():
        raise SteerlabError(f"No steering file at {path}; give a JSON file of intervention objects.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SteerlabError(f"The steering file {path} is not valid JSON ({exc}).") from None
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(x, dict) for x in items):
        raise SteerlabError(f"The steering file {path} must hold an intervention object or a list of them.")
    load_sae = _sae_loader()
    return [from_dict(x, load_sae) for x in items]


def _sae_loader():
    """steerlab.sae's reader (for SAE steering and per-request SAE references)."""
    from steerlab.sae import load_sae

    return load_sae


def serve_cmd(
    model: str = typer.Argument(..., help="A model id, local folder or packaged alias (e.g. smollm2-135m-instruct)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    steer: Optional[List[str]] = typer.Option(None, "--steer", "-s", help="Steering for every request, e.g. vector=joy.safetensors,strength=6 (repeatable; same syntax as `generate`)."),
    steer_file: Optional[Path] = typer.Option(None, "--steer-file", help="JSON file of Intervention.to_dict() objects applied to every request."),
    model_id: Optional[str] = typer.Option(None, "--model-id", help="Name clients use in 'model' (default: the model's name)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Require the key held in this environment variable."),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="Most concurrent requests batched into one forward pass."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | ..."),
    verbose: bool = typer.Option(False, "--verbose", help="Log each request line."),
) -> None:
    """Serve MODEL at /v1/models, /v1/chat/completions and /v1/completions."""
    import steerlab
    from steerlab.interventions.parse import build_intervention, parse_steer
    from steerlab.serve import serve_forever, start_server

    specs = [parse_steer(s) for s in steer or []]  # form errors surface before the model loads
    from_file = load_steering(steer_file)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise SteerlabError(f"--api-key-env names ${api_key_env}, but it is not set; export it or drop the option.")
    loaded = steerlab.load(model, dtype=dtype, device=device)
    load_sae = _sae_loader()
    interventions = [build_intervention(s, loaded, load_sae) for s in specs] + from_file
    try:
        server = start_server(loaded, host, port, interventions, model_id=model_id, api_key=api_key, max_batch=max_batch,
                              verbose=verbose, resolve_sae=load_sae)
    except OSError as exc:
        raise SteerlabError(f"Cannot listen on {host}:{port} ({exc.strerror}); pick another --port.") from None
    steered = f", steered by {len(interventions)} intervention(s)" if interventions else ""
    typer.echo(f"serving {server.app.config.model_id}{steered} at {server.url} (Ctrl-C to stop)", err=True)
    serve_forever(server)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
