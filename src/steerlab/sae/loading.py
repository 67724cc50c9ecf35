"""`load_sae(ref)`: a local file or folder in any public format, a hub reference, or a known release name.

References:
  PATH                           a SAELens / sparsify / dictionary_learning folder, a Gemma Scope
                                 params.npz, a Goodfire .pt/.pth, or a dictionary_learning ae.pt
  hf://ORG/REPO[/PATH]           a file or folder inside a Hugging Face repo (needs the network or the HF cache)
  RELEASE:SAE_ID                 a release name (a few built in below; with the optional `sae-lens`
                                 extra, any SAELens release), e.g. gemma-scope-2b-pt-res:layer_12/width_16k/average_l0_82
"""

from __future__ import annotations

import os
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.sae.core import Sae
from steerlab.sae.formats import (
    read_dictionary_learning,
    read_gemmascope,
    read_goodfire,
    read_saelens,
    read_sparsify,
    write_saelens,
)
from steerlab.sae.formats._files import read_torch
from steerlab.sae.formats.goodfire import KEYS as GOODFIRE_KEYS
from steerlab.sae.formats.saelens import is_saelens
from steerlab.sae.formats.sparsify import is_sparsify

FORMATS = ("saelens", "gemmascope", "goodfire", "dictionary_learning", "sparsify")

# Release name -> (hub repo, path template: {id} is the SAE id). Any other name needs sae-lens.
KNOWN_RELEASES: dict[str, tuple[str, str]] = {
    "gpt2-small-res-jb": ("jbloom/GPT2-Small-SAEs-Reformatted", "{id}"),
    "gemma-scope-2b-pt-res": ("google/gemma-scope-2b-pt-res", "{id}/params.npz"),
    "gemma-scope-2b-pt-mlp": ("google/gemma-scope-2b-pt-mlp", "{id}/params.npz"),
    "gemma-scope-2b-pt-att": ("google/gemma-scope-2b-pt-att", "{id}/params.npz"),
    "gemma-scope-9b-pt-res": ("google/gemma-scope-9b-pt-res", "{id}/params.npz"),
    "gemma-scope-9b-it-res": ("google/gemma-scope-9b-it-res", "{id}/params.npz"),
    "goodfire-llama-3.1-8b-instruct": ("Goodfire/Llama-3.1-8B-Instruct-SAE-l19", "Llama-3.1-8B-Instruct-SAE-l19.pth"),
    "sae-llama-3-8b-32x": ("EleutherAI/sae-llama-3-8b-32x", "{id}"),
}


def detect_format(path: Path) -> str:
    """Which public format a local file or folder is in (by its file names and, for .pt, its keys)."""
    if path.is_dir():
        if is_saelens(path):
            return "saelens"
        if is_sparsify(path):
            return "sparsify"
        if (path / "params.npz").is_file():
            return "gemmascope"
        if (path / "ae.pt").is_file():
            return "dictionary_learning"
        pts = sorted(path.glob("*.pt")) + sorted(path.glob("*.pth"))
        if len(pts) == 1:
            return detect_format(pts[0])
        raise SteerlabError(
            f"Folder {path} holds no SAE steerlab recognises (cfg.json + sae_weights.safetensors, cfg.json + sae.safetensors, params.npz, ae.pt or one .pt/.pth)."
        )
    if not path.exists():
        raise SteerlabError(f"SAE path {path} does not exist.")
    if path.suffix == ".npz":
        return "gemmascope"
    if path.name == "ae.pt":
        return "dictionary_learning"
    if path.suffix in (".pt", ".pth"):
        keys = set(read_torch(path))
        return "goodfire" if set(GOODFIRE_KEYS) <= keys else "dictionary_learning"
    if path.suffix == ".safetensors" or path.name == "cfg.json":
        return detect_format(path.parent)
    raise SteerlabError(f"{path} is not an SAE file steerlab reads (.npz, .pt, .pth, or a folder).")


def read_local(
    path: Path, fmt: str | None = None, *, layer: int | None = None, site: str | None = None, model: str | None = None
) -> Sae:
    """An Sae from a local file or folder in a given (or detected) format."""
    path = Path(path).expanduser()
    fmt = fmt or detect_format(path)
    if fmt == "saelens":
        folder = path if path.is_dir() else path.parent
        sae = read_saelens(folder)
    elif fmt == "sparsify":
        sae = read_sparsify(path if path.is_dir() else path.parent, layer=layer, site=site, model=model)
    elif fmt == "gemmascope":
        sae = read_gemmascope(path, layer=layer, site=site, model=model)
    elif fmt == "goodfire":
        file = path if path.is_file() else next(iter(sorted(path.glob("*.pt*"))))
        sae = read_goodfire(file, layer=layer, site=site, model=model)
    elif fmt == "dictionary_learning":
        sae = read_dictionary_learning(path, layer=layer, site=site)
    else:
        raise SteerlabError(f"Unknown SAE format '{fmt}'; choose one of: {', '.join(FORMATS)}.")
    if fmt in ("saelens",) and (layer is not None or site is not None):
        sae.cfg.layer = sae.cfg.layer if layer is None else layer
        sae.cfg.site = site or sae.cfg.site
    if model and not sae.cfg.model:
        sae.cfg.model = model
    return sae


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def hub_path(repo: str, path: str = "", revision: str | None = None) -> Path:
    """Download (or find in the HF cache) a file or folder of a hub repo; one sentence if that is impossible."""
    from huggingface_hub import hf_hub_download, snapshot_download

    path = path.strip("/")
    try:
        if path and Path(path).suffix in (".npz", ".pt", ".pth", ".safetensors", ".json"):
            return Path(hf_hub_download(repo, path, revision=revision))
        patterns = [f"{path}/*"] if path else None
        root = Path(snapshot_download(repo, allow_patterns=patterns, revision=revision))
        return root / path if path else root
    except Exception as exc:  # offline, missing repo, missing file: many error types
        name = type(exc).__name__
        if _offline() or "LocalEntryNotFound" in name or "Connect" in name or "OfflineMode" in name:
            raise SteerlabError(
                f"SAE '{repo}/{path}' is not in the local Hugging Face cache and the hub cannot be reached; download it once online or pass a local path."
            ) from exc
        if "RepositoryNotFound" in name:
            raise SteerlabError(f"Hub repo '{repo}' does not exist (or needs a token).") from exc
        if "EntryNotFound" in name:
            raise SteerlabError(f"Hub repo '{repo}' has no '{path}'.") from exc
        raise SteerlabError(f"Could not fetch SAE '{repo}/{path}' from the hub ({name}).") from exc


def _saelens_registry(release: str) -> tuple[str, dict[str, str]] | None:
    """(repo_id, sae_id -> path) from the optional sae-lens package's registry, if installed."""
    try:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    except ImportError:
        try:
            from sae_lens.toolkit.pretrained_saes_directory import get_pretrained_saes_directory
        except ImportError:
            return None
    directory = get_pretrained_saes_directory()
    if release not in directory:
        return None
    entry = directory[release]
    return entry.repo_id, dict(entry.saes_map)


def resolve_release(release: str, sae_id: str) -> tuple[str, str]:
    """(hub repo, path in repo) for a release name and SAE id; one sentence for an unknown release."""
    if release in KNOWN_RELEASES:
        repo, template = KNOWN_RELEASES[release]
        return repo, template.format(id=sae_id)
    registry = _saelens_registry(release)
    if registry is not None:
        repo, saes = registry
        if sae_id not in saes:
            raise SteerlabError(f"SAELens release '{release}' has no SAE '{sae_id}'.")
        return repo, saes[sae_id]
    known = ", ".join(sorted(KNOWN_RELEASES))
    raise SteerlabError(
        f"Unknown SAE release '{release}': steerlab knows {known}; install the sae-lens extra for every SAELens release, or pass hf://ORG/REPO/PATH."
    )


def load_sae(
    ref: str | os.PathLike,
    *,
    format: str | None = None,
    layer: int | None = None,
    site: str | None = None,
    model: str | None = None,
) -> Sae:
    """Load an SAE from a local path, an hf:// reference or RELEASE:SAE_ID; layer/site override what the files say.

    Args:
        ref: a local file or folder, `hf://ORG/REPO[/PATH]`, or `RELEASE:SAE_ID` (a known release, or any
            SAELens release when sae-lens is installed).
        format: one of saelens, gemmascope, goodfire, dictionary_learning, sparsify (default: detected).
        layer: the layer the SAE reads, for formats whose files do not say it (or to override them).
        site: the site it reads (resid_pre, resid_post, attn_out, mlp_out), likewise.
        model: the model name to record, for formats whose files do not say it.

    Returns:
        The Sae in our own conventions; its `source` is the file or folder read, or the hub reference.
    """
    text = str(ref)
    local = Path(text).expanduser()
    if local.exists():
        return read_local(local, format, layer=layer, site=site, model=model)
    if text.startswith("hf://"):
        parts = text[5:].split("/", 2)
        if len(parts) < 2:
            raise SteerlabError(f"Hub SAE reference '{text}' needs the form hf://ORG/REPO[/PATH].")
        repo, inner = "/".join(parts[:2]), parts[2] if len(parts) > 2 else ""
        sae = read_local(hub_path(repo, inner), format, layer=layer, site=site, model=model)
        sae.source = text
        return sae
    if ":" in text and not text.startswith(("/", ".", "~")):
        release, sae_id = text.split(":", 1)
        repo, inner = resolve_release(release, sae_id)
        sae = read_local(hub_path(repo, inner), format, layer=layer, site=site, model=model)
        sae.source = text
        return sae
    raise SteerlabError(f"SAE '{text}' is not a local path, an hf://ORG/REPO/PATH reference or a RELEASE:SAE_ID name.")


def save_sae(sae: Sae, folder: str | os.PathLike) -> Path:
    """Save as a SAELens-compatible folder that `load_sae` (and SAELens) read back as the same function."""
    return write_saelens(sae, Path(folder).expanduser())
