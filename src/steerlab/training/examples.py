"""Training examples as token ids plus labels: the loss covers only the segments marked trained."""

from __future__ import annotations

from typing import Sequence

import torch

from steerlab.models.loading import Model, Prompt

Encoded = tuple[list[int], list[int]]


def end_token(model: Model) -> int | None:
    """The token that closes an answer: the model's end-of-turn token, else its EOS."""
    if model.stop_token_ids:
        return model.stop_token_ids[0]
    return model.tokenizer.eos_token_id


def encode_example(
    model: Model, prompt: Prompt, segments: Sequence[tuple[str, bool]], end: bool = True, chat: bool | None = None
) -> Encoded:
    """Input ids and labels: -100 on the prompt and untrained segments; the closing token is trained."""
    ids = list(model.encode(prompt, chat=chat))
    labels = [-100] * len(ids)
    for text, trained in segments:
        seg = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += seg
        labels += seg if trained else [-100] * len(seg)
    closing = end_token(model) if end else None
    if closing is not None:
        ids.append(closing)
        labels.append(closing)
    return ids, labels


def encode_pair(model: Model, prompt: Prompt, response: str, end: bool = True, chat: bool | None = None) -> Encoded:
    """A (prompt, response) pair with the loss on the whole response."""
    return encode_example(model, prompt, ((response, True),), end=end, chat=chat)


def right_pad(
    batch: Sequence[Encoded], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, labels (-100 on padding) and attention_mask, padded on the right."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids, _ in batch], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
    return input_ids, labels, mask
