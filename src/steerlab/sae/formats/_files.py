"""Read untrusted SAE files safely: safetensors, numpy without pickle, torch.load(weights_only=True).

Every failure becomes one sentence naming the file; nothing in a file is ever executed.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from steerlab.errors import SteerlabError


def need_file(path: Path, what: str) -> Path:
    """The path if it is a file, else one sentence saying what is missing."""
    if not path.is_file():
        raise SteerlabError(f"{what} not found at {path}.")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a config file."""
    need_file(path, "SAE config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SteerlabError(f"SAE config {path} is not valid JSON ({exc}); the file is corrupt or truncated.") from exc
    if not isinstance(data, dict):
        raise SteerlabError(f"SAE config {path} is not a JSON object.")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file."""
    from safetensors.torch import load_file

    need_file(path, "SAE weights")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise SteerlabError(
            f"SAE weights {path} are unreadable or truncated ({str(exc).splitlines()[0][:120]})."
        ) from exc


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """All arrays of a .npz file, refusing pickled object arrays."""
    import numpy as np

    need_file(path, "SAE weights")
    with path.open("rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            raise SteerlabError(f"SAE weights {path} are unreadable or truncated (not a .npz archive).")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SteerlabError(
                f"{path} holds pickled Python objects; steerlab will not load it (it could run code)."
            ) from exc
        raise SteerlabError(f"SAE weights {path} are unreadable or truncated ({exc}).") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SteerlabError(f"SAE weights {path} are unreadable or truncated ({type(exc).__name__}).") from exc


def read_torch(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pt/.pth file, loaded with weights_only=True so no pickled code can run."""
    need_file(path, "SAE weights")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise SteerlabError(
            f"{path} contains Python objects beyond tensors (a pickle that could execute code); steerlab refuses to load it."
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise SteerlabError(
            f"SAE weights {path} are unreadable or truncated ({str(exc).splitlines()[0][:120]})."
        ) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SteerlabError(f"{path} is not a state dict of tensors.")
    return dict(obj)


def require(weights: dict[str, torch.Tensor], keys: tuple[str, ...], path: Path, fmt: str) -> None:
    """One sentence if a state dict lacks keys its format needs."""
    missing = [k for k in keys if k not in weights]
    if missing:
        have = ", ".join(sorted(weights)[:8])
        raise SteerlabError(f"{path} is not a {fmt} SAE: it lacks {', '.join(missing)} (it has {have}).")
