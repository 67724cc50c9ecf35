"""What lies in steerlab's cache folder (converted models, default SAEs, ESR caches, digests) and freeing it."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from steerlab.models.gguf_cache import cache_intact, cache_root


@dataclass(frozen=True)
class CacheEntry:
    """One item of the cache: a converted model, an SAE folder, a cache file or a leftover."""

    kind: str  # "model" | "sae" | "esr" | "answers" | "digests" | "leftover" | "other"
    path: Path
    size: int  # bytes
    modified: float  # seconds since the epoch (newest file inside)
    intact: bool = True  # False: a converted model whose files no longer match their fingerprint


def _size_and_time(path: Path) -> tuple[int, float]:
    if path.is_file():
        st = path.stat()
        return st.st_size, st.st_mtime
    size, newest = 0, path.stat().st_mtime
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            size, newest = size + st.st_size, max(newest, st.st_mtime)
    return size, newest


_KINDS = {"models": "model", "saes": "sae", "esr": "esr", "chat_answers": "answers"}


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache, largest first (leftovers of killed writes are their own kind)."""
    root = root or cache_root()
    entries: list[CacheEntry] = []
    if not root.is_dir():
        return entries
    for top in sorted(root.iterdir()):
        if top.name == "digests":
            size, when = _size_and_time(top)
            entries.append(CacheEntry("digests", top, size, when))
            continue
        kind = _KINDS.get(top.name)
        children = sorted(top.iterdir()) if kind and top.is_dir() else [top]
        for child in children:
            size, when = _size_and_time(child)
            leftover = child.name.startswith(".") and child.name.endswith((".tmp", ".old"))
            intact = cache_intact(child) if kind == "model" and not leftover and child.is_dir() else True
            entries.append(CacheEntry("leftover" if leftover else kind or "other", child, size, when, intact))
    return sorted(entries, key=lambda e: -e.size)


def prune(
    entries: list[CacheEntry], *, everything: bool = False, older_than_days: float | None = None, dry_run: bool = False
) -> list[CacheEntry]:
    """Remove leftovers and damaged conversions (always), entries unused for older_than_days, or everything.

    Returns:
        The entries removed (or that would be, with dry_run).
    """
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    chosen = [
        e
        for e in entries
        if everything or e.kind == "leftover" or not e.intact or (cutoff is not None and e.modified < cutoff)
    ]
    if not dry_run:
        for e in chosen:
            if e.path.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                e.path.unlink(missing_ok=True)
    return chosen
