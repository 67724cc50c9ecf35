"""Read user chat data: a JSONL file of single-turn (prompt, response) pairs.

Each line is a JSON object with either `messages` (OpenAI style: the first user turn and the assistant
turn that follows it are used) or a prompt field (`prompt`, `question`, `instruction`, `input`) and a
response field (`response`, `completion`, `answer`, `output`). Other lines are counted as unusable; a
file with no usable row is refused in one sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from steerlab.errors import SteerlabError

_PROMPT_KEYS = ("prompt", "question", "instruction", "input")
_RESPONSE_KEYS = ("response", "completion", "answer", "output")


@dataclass(frozen=True)
class ChatFile:
    """The usable pairs of a chat file, and how many lines were skipped."""

    pairs: list[tuple[str, str]]
    skipped: int


def _pair(row) -> tuple[str, str] | None:
    if not isinstance(row, dict):
        return None
    messages = row.get("messages")
    if isinstance(messages, list):
        for i, m in enumerate(messages):
            if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                after = messages[i + 1] if i + 1 < len(messages) else None
                if (
                    isinstance(after, dict)
                    and after.get("role") == "assistant"
                    and isinstance(after.get("content"), str)
                ):
                    p, r = m["content"].strip(), after["content"].strip()
                    return (p, r) if p and r else None
                return None
        return None
    prompt = next((row[k] for k in _PROMPT_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    response = next((row[k] for k in _RESPONSE_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    return (prompt.strip(), response.strip()) if prompt and response else None


def read_chat_pairs(path: str | Path, min_pairs: int = 1) -> ChatFile:
    """Usable (prompt, response) pairs of a JSONL chat file (UTF-8).

    Args:
        path: the file.
        min_pairs: refuse files with fewer usable rows than this.
    Returns:
        the pairs in file order and the number of lines skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise SteerlabError(f"Chat data file '{path}' does not exist.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise SteerlabError(f"Chat data file '{path}' is not UTF-8 text.") from None
    pairs, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            pair = _pair(json.loads(line))
        except json.JSONDecodeError:
            pair = None
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    if len(pairs) < min_pairs:
        raise SteerlabError(
            f"'{path}' has {len(pairs)} usable chat rows (need {min_pairs}); each JSONL line must hold messages with a user turn "
            f"followed by an assistant turn, or a prompt and a response."
        )
    return ChatFile(pairs, skipped)
