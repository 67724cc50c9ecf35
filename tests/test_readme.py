"""Every code block in README.md runs as written (the real tier: the blocks use the packaged SmolLM2).

Blocks run in a fresh folder with the venv's `steerlab` and `python` first on PATH. A block may be marked on
the line before its fence with `<!-- readme-test: MODE (why) -->`:
- `ci-runs-this`: only `make demo` / `make test` lines, which CI and tests/test_demo.py run themselves;
- `offline-parse`: a command that needs GPUs and the hub; it must parse (every flag exists and validates) and
  stop offline with one sentence and exit code 2, never a usage error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mode>[\w-]+)[^>]*-->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    return [(m["mode"] or "run", m["lang"], m["body"]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_readme_has_the_two_commands_and_known_modes():
    found = blocks()
    assert found and found[0][0] == "ci-runs-this" and "make demo" in found[0][2] and "make test" in found[0][2]
    for mode, lang, body in found:
        assert mode in ("run", "ci-runs-this", "offline-parse"), f"unknown readme-test mode {mode}"
        assert lang in ("bash", "python"), f"a README block in '{lang}' cannot be run; use bash or python"
        if mode == "ci-runs-this":
            assert all(
                line.split("#")[0].split() in (["make", "demo"], ["make", "test"]) for line in body.strip().splitlines()
            )


@pytest.mark.real
@pytest.mark.parametrize("index", [i for i, (mode, _, _) in enumerate(blocks()) if mode != "ci-runs-this"])
def test_readme_block_runs(index, tmp_path):
    mode, lang, body = blocks()[index]
    cmd = [sys.executable, "-c", body] if lang == "python" else ["bash", "-euo", "pipefail", "-c", body]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    if mode == "offline-parse":
        assert proc.returncode == 2, out
        assert "Usage:" not in out and "No such option" not in out and "Traceback" not in out, out
        assert len([line for line in out.splitlines() if line.startswith("error:")]) == 1, out
    else:
        assert proc.returncode == 0, f"README block {index} failed:\n{body}\n---\n{out[-3000:]}"
