"""Content fingerprints of model folders: what a model IS, not where it lies.

A local folder's identity (run-store keys, cached thresholds, the GGUF conversion cache) is a digest of
its files' bytes: rebuilding an organism at the same path gives a new fingerprint, so resumed runs and
caches never mix two weight sets. Digests are remembered per file stat signature (paths.file_digest).
"""

from __future__ import annotations

from pathlib import Path

from steerlab.paths import files_digest

MODEL_SUFFIXES = (".json", ".safetensors", ".bin", ".jinja", ".model", ".txt", ".tiktoken")
SKIP = {"FINGERPRINT", "SOURCE"}


def digest_memo_dir() -> Path:
    """Where remembered file digests live (under the steerlab cache)."""
    from steerlab.models.gguf_cache import cache_root

    return cache_root() / "digests"


def model_files(folder: Path) -> list[Path]:
    """The files that make up a saved model: weights, config, tokenizer and template."""
    return [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix in MODEL_SUFFIXES and p.name not in SKIP and not p.name.startswith(".")
    ]


def folder_fingerprint(folder: str | Path, remember: bool = True) -> str:
    """A 16-hex-digit digest of a model folder's weight, config and tokenizer files (their bytes).

    remember: keep the file digests in the cache across processes (off for a temporary folder).
    """
    folder = Path(folder)
    return files_digest(model_files(folder), folder, digest_memo_dir() if remember else None)[:16]
