"""Dequantise a GGUF model once and cache it as safetensors under the user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

from steerlab.errors import SteerlabError


def cache_root() -> Path:
    """steerlab's cache folder: $STEERLAB_CACHE, else $XDG_CACHE_HOME/steerlab, else ~/.cache/steerlab."""
    if os.environ.get("STEERLAB_CACHE"):
        return Path(os.environ["STEERLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "steerlab"


def converted_dir(gguf_path: Path) -> Path:
    """Where the safetensors copy of a GGUF file lives: keyed by the GGUF file's content digest."""
    from steerlab.models.files import digest_memo_dir
    from steerlab.paths import file_digest

    key = file_digest(gguf_path, digest_memo_dir())[:16]
    return cache_root() / "models" / f"{gguf_path.stem}-{key}"


def cache_intact(target: Path) -> bool:
    """A conversion is served only when its files still have the digest recorded when it was written."""
    from steerlab.models.files import folder_fingerprint

    stamp = target / "FINGERPRINT"
    if not ((target / "config.json").is_file() and any(target.glob("*.safetensors")) and stamp.is_file()):
        return False
    return stamp.read_text().strip() == folder_fingerprint(target)


def _check_gguf_header(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise SteerlabError(f"{path} is not a GGUF file (its header is not 'GGUF'); pass a valid .gguf file.")


def ensure_converted(gguf_path: Path) -> Path:
    """Return a folder with config, tokenizer and fp32 safetensors for a GGUF file, converting once.

    Every hit checks the folder against the fingerprint stored with it; a damaged or altered copy is converted again.
    """
    if not gguf_path.is_file():
        raise SteerlabError(f"GGUF file {gguf_path} does not exist.")
    _check_gguf_header(gguf_path)
    target = converted_dir(gguf_path)
    if cache_intact(target):
        return target
    from steerlab.models.files import folder_fingerprint
    from steerlab.paths import atomic_dir
    from steerlab.progress import status

    verb = "Re-converting" if target.exists() else "Dequantising"
    with status(f"{verb} {gguf_path.name} once (cached in {target.parent})"), atomic_dir(target) as tmp:
        convert_gguf(gguf_path, tmp)
        (tmp / "SOURCE").write_text(str(gguf_path.resolve()) + "\n")
        (tmp / "FINGERPRINT").write_text(folder_fingerprint(tmp, remember=False) + "\n")
    return target


def convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF file into a Hugging Face folder (config, tokenizer, fp32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
