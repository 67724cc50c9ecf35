"""Dequantise a GGUF model once and cache it as safetensors under the user cache folder."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from steerlab.errors import SteerlabError


def cache_root() -> Path:
    """steerlab's cache folder: $STEERLAB_CACHE, else $XDG_CACHE_HOME/steerlab, else ~/.cache/steerlab."""
    if os.environ.get("STEERLAB_CACHE"):
        return Path(os.environ["STEERLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "steerlab"


def converted_dir(gguf_path: Path) -> Path:
    """Where the safetensors copy of a GGUF file lives; keyed by path, size and mtime (no hashing)."""
    stat = gguf_path.stat()
    key = hashlib.sha1(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{gguf_path.stem}-{key}"


def _check_gguf_header(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise SteerlabError(f"{path} is not a GGUF file (its header is not 'GGUF'); pass a valid .gguf file.")


def ensure_converted(gguf_path: Path) -> Path:
    """Return a folder with config, tokenizer and fp32 safetensors for a GGUF file, converting once."""
    if not gguf_path.is_file():
        raise SteerlabError(f"GGUF file {gguf_path} does not exist.")
    target = converted_dir(gguf_path)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    _check_gguf_header(gguf_path)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.progress import status

    with status(f"Dequantising {gguf_path.name} once (cached in {target.parent})"):
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
        except (ValueError, OSError, KeyError, EOFError) as exc:
            raise SteerlabError(f"Could not read GGUF file {gguf_path}: {exc}".rstrip(".") + ".") from exc
        # The dequantised weights are plain fp32 tensors: drop the GGUF quantiser so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "SOURCE").write_text(str(gguf_path.resolve()) + "\n")
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same conversion first
            shutil.rmtree(tmp, ignore_errors=True)
    return target
