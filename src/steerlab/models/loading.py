"""`load()`: a Hugging Face id, a local folder, a .gguf file or a packaged alias becomes a `Model`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.models.arch import Arch
from steerlab.models.digest import weights_digest
from steerlab.models.gguf_cache import ensure_converted
from steerlab.models.packaged import PACKAGED, packaged_gguf_path

Message = dict[str, str]
Prompt = str | Sequence[Message]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Model:
    """A loaded causal LM: the HF module, its tokenizer, its architecture adapter and where it came from."""

    hf: Any
    tokenizer: Any
    arch: Arch
    name: str
    revision: str = "unknown"
    stop_token_ids: tuple[int, ...] = field(default=())

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def pad_id(self) -> int:
        """The token id that fills padding: the tokenizer's pad token, or 0 when it has none (padding is masked)."""
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else 0

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, prompt: Prompt, chat: bool | None = None, system: str | None = None) -> list[int]:
        """The exact token ids a prompt becomes; the chat template (when used) is applied exactly once."""
        use_chat = self.has_chat_template if chat is None else chat
        if isinstance(prompt, str) and not prompt.strip():
            raise SteerlabError("A prompt is empty; give each prompt some text.")
        if use_chat:
            if not self.has_chat_template:
                raise SteerlabError(f"Model '{self.name}' has no chat template; pass chat=False (CLI: --raw).")
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            if system is not None:
                messages = [{"role": "system", "content": system}] + messages
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            # The template already writes BOS and the turn markers: add no special tokens again.
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            if not isinstance(prompt, str):
                raise SteerlabError("A list of chat messages needs the chat template; drop chat=False.")
            ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        bos = self.tokenizer.bos_token_id
        while bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]
        return list(ids)

    def show_tokens(self, prompt: Prompt, chat: bool | None = None) -> list[tuple[int, str]]:
        """(id, token text) pairs for a prompt, to see exactly what the model is fed."""
        ids = self.encode(prompt, chat=chat)
        return [(i, self.tokenizer.convert_ids_to_tokens(i)) for i in ids]

    def fingerprint(self) -> dict[str, str]:
        """Everything about the model that changes an answer, for cache and store keys.

        The weights enter by content (`weights`, a digest of every parameter and buffer, read each call:
        about 50 ms for SmolLM2), so a model fine-tuned or edited in place never shares a fingerprint with
        its base, whatever its name.

        Returns:
            name, revision, dtype, chat-template digest, vocabulary size and weights digest, as strings.
        """
        template = getattr(self.tokenizer, "chat_template", None) or ""
        if not isinstance(template, str):
            template = json.dumps(template, sort_keys=True)
        return {
            "model": self.name,
            "revision": self.revision,
            "dtype": str(self.dtype).replace("torch.", ""),
            "chat_template": hashlib.sha256(template.encode()).hexdigest()[:16],
            "vocab": str(len(self.tokenizer)),
            "weights": weights_digest(list(self.hf.named_parameters()) + list(self.hf.named_buffers())),
        }


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise SteerlabError(f"Unknown dtype '{dtype}'; choose one of: float32, bfloat16, float16.")
    return _DTYPES[dtype]


def _resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SteerlabError(f"Device '{device}' was asked for but no CUDA GPU is available; use --device cpu.")
    return device


def _check_local_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise SteerlabError(f"Folder {path} has no config.json; point at a saved Hugging Face model folder.")
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin"))
    if not weights:
        raise SteerlabError(f"Folder {path} has no weights file (*.safetensors or *.bin).")
    for file in path.glob("*.safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as exc:  # safetensors raises its own error types for truncated headers
            raise SteerlabError(
                f"Weights file {file} is unreadable or truncated ({exc}); re-save or re-download it."
            ) from exc


def _resolve_hub(model_id: str, revision: str | None) -> str:
    """Check a hub id before loading: cached, downloadable, or one sentence saying why not."""
    from huggingface_hub import try_to_load_from_cache

    if not _HUB_ID.match(model_id):
        aliases = ", ".join(PACKAGED)
        raise SteerlabError(
            f"Unknown model '{model_id}': not a packaged alias ({aliases}), a local folder, a .gguf file or a hub id like 'org/name'."
        )
    cached = try_to_load_from_cache(model_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return model_id
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if offline:
        raise SteerlabError(
            f"Model '{model_id}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set; download it once online or pass a local folder."
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        hf_hub_download(model_id, "config.json", revision=revision)
    except RepositoryNotFoundError as exc:
        raise SteerlabError(f"Model '{model_id}' does not exist on the Hugging Face hub (or needs a token).") from exc
    except EntryNotFoundError as exc:
        raise SteerlabError(f"Hub repo '{model_id}' has no config.json, so it is not a transformers model.") from exc
    except Exception as exc:  # connection errors come in many types
        raise SteerlabError(
            f"Model '{model_id}' is not cached and the hub cannot be reached ({type(exc).__name__}); connect once or pass a local folder."
        ) from exc
    return model_id


def _stop_tokens(hf: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: set[int] = set()
    eos = getattr(getattr(hf, "generation_config", None), "eos_token_id", None)
    for value in (eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return tuple(sorted(ids))


def load(
    name: str | os.PathLike,
    *,
    dtype: str | torch.dtype = "float32",
    device: str | None = "cpu",
    revision: str | None = None,
) -> Model:
    """Load a model by packaged alias, .gguf file, local folder or Hugging Face id (fp32 on CPU by default).

    Args:
        name: a packaged alias (`steerlab models` lists them; no network), a .gguf file (dequantised once and
            cached as safetensors), a local model folder, a LoRA adapter folder written by steerlab (its base
            model with the adapter merged in), or a Hugging Face hub id.
        dtype: the weights' dtype ("float32", "bfloat16", "float16" or a torch.dtype); fp32 is the oracle.
        device: "cpu", "cuda", "cuda:N", or None / "auto" for a GPU when there is one.
        revision: the hub revision (branch, tag or commit) for a hub id.

    Returns:
        A Model (HF module in eval mode, tokenizer with a pad token, architecture adapter) whose `revision`
        names exactly what was loaded (the hub commit, or a fingerprint of the GGUF or local folder).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = str(name)
    torch_dtype = _resolve_dtype(dtype)
    device = _resolve_device(device)
    if text in PACKAGED:
        folder = ensure_converted(packaged_gguf_path(text))
        source, rev = str(folder), f"gguf:{folder.name}"
    elif text.endswith(".gguf"):
        folder = ensure_converted(Path(text).expanduser())
        source, rev = str(folder), f"gguf:{folder.name}"
    elif (Path(text).expanduser() / ADAPTER_RECORD).is_file():
        return load_adapter_folder(Path(text).expanduser(), dtype=dtype, device=device)
    elif Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        _check_local_folder(folder)
        from steerlab.models.files import folder_fingerprint

        source, rev = str(folder), f"local:{folder_fingerprint(folder)}"
    elif Path(text).expanduser().exists():
        raise SteerlabError(f"{text} is a file but not a .gguf model; pass a model folder, a .gguf file or a hub id.")
    else:
        source = _resolve_hub(text, revision)
        rev = revision or "main"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision if source == text else None)
        hf = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, revision=revision if source == text else None
        )
    except (OSError, ValueError, EnvironmentError) as exc:
        raise SteerlabError(f"Could not load model '{text}': {str(exc).splitlines()[0]}") from exc
    hf.to(device)
    hf.eval()
    commit = getattr(hf.config, "_commit_hash", None)
    if commit and not rev.startswith(("gguf:", "local:")):
        rev = commit
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Model(
        hf=hf, tokenizer=tokenizer, arch=Arch(hf), name=text, revision=rev, stop_token_ids=_stop_tokens(hf, tokenizer)
    )


ADAPTER_RECORD = (
    "steerlab_adapter.json"  # {"base_model": packaged alias or path, "adapter": subfolder}: a LoRA folder load() reads
)


def adapter_base(folder: str | os.PathLike) -> str | None:
    """The base model an adapter folder was trained on (None when the folder holds no steerlab adapter)."""
    record = Path(folder).expanduser() / ADAPTER_RECORD
    if not record.is_file():
        return None
    try:
        return str(json.loads(record.read_text(encoding="utf-8"))["base_model"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SteerlabError(f"{record} is not a valid adapter record (it needs a 'base_model' field).") from exc


def load_adapter_folder(
    folder: Path, *, dtype: str | torch.dtype = "float32", device: str | None = "cpu", expect_base: str | None = None
) -> Model:
    """A LoRA adapter folder (peft files + steerlab_adapter.json): its base model with the adapter merged in."""
    from peft import PeftModel

    base_name = adapter_base(folder)
    if expect_base is not None and base_name != expect_base:
        raise SteerlabError(
            f"The adapter in {folder} was trained on '{base_name}', not '{expect_base}'; "
            f"rebuild it for '{expect_base}' or use '{base_name}'."
        )
    record = json.loads((folder / ADAPTER_RECORD).read_text(encoding="utf-8"))
    adapter = folder / record.get("adapter", "adapter")
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise SteerlabError(f"{folder} has no adapter weights at {weights}; rebuild the adapter.")
    base = load(base_name, dtype=dtype, device=device)
    try:
        merged = PeftModel.from_pretrained(base.hf, str(adapter)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as exc:
        raise SteerlabError(
            f"The adapter in {folder} does not fit '{base_name}' ({str(exc).splitlines()[0][:120]})."
        ) from exc
    merged.eval()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    return Model(
        hf=merged,
        tokenizer=base.tokenizer,
        arch=Arch(merged),
        name=str(folder),
        revision=f"adapter:{digest}+{base.revision}",
        stop_token_ids=base.stop_token_ids,
    )


def wrap(hf: Any, tokenizer: Any, name: str = "custom") -> Model:
    """Wrap an already-built HF model and tokenizer (e.g. a tiny random-weight test model)."""
    hf.eval()
    if tokenizer is not None and tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    stops = _stop_tokens(hf, tokenizer) if tokenizer is not None else ()
    return Model(hf=hf, tokenizer=tokenizer, arch=Arch(hf), name=name, revision="in-memory", stop_token_ids=stops)
