"""Shared fixtures: tiny random-weight models (fast tier) and the packaged SmolLM2 (marked `real`)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_factory():
    from steerlab.testing import tiny_model

    cache = {}

    def make(family: str = "llama"):
        if family not in cache:
            cache[family] = tiny_model(family)
        return cache[family]

    return make


@pytest.fixture(scope="session")
def smollm():
    import steerlab

    return steerlab.load("smollm2-135m-instruct")


@pytest.fixture()
def run_cli(monkeypatch, capsys):
    """Run `steerlab ARGS...` in-process as a user would; returns (exit code, stdout + stderr)."""
    import sys

    from steerlab.cli.main import main as cli_main

    def run(*args):
        capsys.readouterr()  # drop output of the test's own set-up
        monkeypatch.setattr(sys, "argv", ["steerlab", *map(str, args)])
        with pytest.raises(SystemExit) as exc:
            cli_main()
        out = capsys.readouterr()
        return exc.value.code, out.out + out.err

    return run
