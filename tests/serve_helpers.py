"""Helpers for server tests: a free loopback port, a child server process, JSON calls."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SCRIPT = str(Path(__file__).with_name("serve_process.py"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE = str(Path(__file__).with_name("fake_llm_server.py"))


def start_child(model: str, port: int, timeout: float = 120.0, key_env: str | None = None) -> subprocess.Popen:
    """Start a server process and wait until /v1/models answers.

    model "fake": the scripted fake judge; "cli:NAME": the real `steerlab serve NAME` command; else serve_process.py.
    """
    headers = {}
    if model == "fake":
        cmd = [sys.executable, FAKE, str(port)]
    elif model.startswith("cli:"):
        cmd = [str(Path(sys.executable).with_name("steerlab")), "serve", model[4:], "--port", str(port)]
        if key_env:
            cmd += ["--api-key-env", key_env]
            headers["Authorization"] = f"Bearer {os.environ[key_env]}"
    else:
        cmd = [sys.executable, SCRIPT, model, str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers=headers)
            urllib.request.urlopen(req, timeout=1).read()
            return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("server did not start")


def call(url: str, body=None, headers=None, method=None):
    """(status, parsed JSON or raw text) for one request."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if data is not None else "GET"),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw
