"""Files, read and written safely: UTF-8 text with one clear sentence, and atomic writes.

Every JSON, model and SAE write goes through here: the content goes to a temporary file beside the
target, is flushed to disk, then renamed over the target, so a killed process leaves either the old
file or the new one, never half of one. Folders (a saved model, an SAE) are built in a temporary
folder beside the target and swapped in whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from steerlab.errors import SteerlabError


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A text file's content as UTF-8 (a leading byte-order mark is allowed and dropped).

    Args:
        path: the file.
        what: how the sentence names it ("prompts file", "steering file", ...).
    Returns:
        The text, with a BOM removed.
    """
    path = Path(path)
    if not path.is_file():
        raise SteerlabError(f"The {what} {path} does not exist (or is not a file).")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SteerlabError(
            f"The {what} {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8."
        ) from None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for any writer (safetensors, torch.save, savefig); renamed over it on success.

    Args:
        path: the final file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, **kwargs: Any) -> Path:
    """Write JSON atomically; returns the path. kwargs go to json.dumps (sort_keys, default, ...)."""
    return write_text(path, json.dumps(data, indent=indent, **kwargs) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `path`; on success it replaces `path` whole (an old folder is removed).

    Args:
        path: the final folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- content fingerprints ---------------------------------------------------------------------------------------------

_DIGESTS: dict[tuple, str] = {}  # (path, stat signature) -> digest, for this process
MEMO_MIN_BYTES = 16 << 20  # smaller files are hashed again in each process (cheap) and leave no memo file behind


def _signature(path: Path) -> tuple:
    """What changes whenever a file's bytes may have changed: any write updates ctime, which no tool can set back."""
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def file_digest(path: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file's bytes, remembered per stat signature (in memory, and in memo_dir across processes).

    The signature (size, mtime, ctime, inode) is checked on every call; the bytes are hashed again whenever it
    changed, so a file rewritten in place (a model folder rebuilt at the same path) gets a new digest.

    Args:
        path: the file.
        memo_dir: a folder for remembered digests (e.g. the user cache); None keeps them in memory only.
    Returns:
        The hex digest.
    """
    import hashlib

    path = Path(path)
    sig = _signature(path)
    if sig in _DIGESTS:
        return _DIGESTS[sig]
    memo = None
    if memo_dir is not None and sig[1] >= MEMO_MIN_BYTES:
        memo = Path(memo_dir) / (hashlib.sha1(sig[0].encode()).hexdigest() + ".json")
        try:
            saved = json.loads(memo.read_text())
            if tuple(saved["signature"]) == sig:
                _DIGESTS[sig] = saved["sha256"]
                return saved["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    if _signature(path) == sig:  # unchanged while we read it
        _DIGESTS[sig] = digest
        if memo is not None:
            with contextlib.suppress(OSError):
                write_json(memo, {"signature": list(sig), "sha256": digest}, indent=None)
    return digest


def files_digest(paths: list[Path], root: Path, memo_dir: str | os.PathLike | None = None) -> str:
    """One digest over several files: each file's name (relative to root), size and content digest."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0{file_digest(p, memo_dir)}\n".encode())
    return h.hexdigest()
