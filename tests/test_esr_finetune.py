"""Self-correction fine-tuning: the data mix, the loss mask, the ratio check, LoRA on a tiny model."""

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.esr.finetune import ACKNOWLEDGEMENTS, Example, FinetuneConfig, build_examples, tokenize, train_lora
from steerlab.esr.prompts import DISCOVERY_PROMPTS, EVAL_PROMPTS, TRAIN_PROMPTS

ANSWERS = {
    "How do you boil an egg?": "Put the egg in boiling water. Wait ten minutes.",
    "How do you fry an egg?": "Heat oil in a pan. Crack the egg into it.",
    "How do you iron a shirt?": "Heat the iron. Press the shirt flat.",
}


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_ratio_outside_unit_interval(ratio):
    with pytest.raises(SteerlabError, match=r"mix ratio must lie in \[0, 1\]"):
        FinetuneConfig(ratio=ratio)


def test_mix_and_segments():
    ex = build_examples(ANSWERS, FinetuneConfig(ratio=0.25, n_examples=8))
    sc = [e for e in ex if e.kind == "self_correction"]
    assert len(sc) == 2 and len(ex) == 8
    for e in sc:
        (drift, t1), (rest, t2) = e.segments
        assert not t1 and t2 and drift.strip() != ANSWERS[e.prompt] and rest.startswith(ACKNOWLEDGEMENTS)
        assert rest.endswith(ANSWERS[e.prompt])
    assert all(e.segments == ((ANSWERS[e.prompt], True),) for e in ex if e.kind == "normal")
    assert not set(TRAIN_PROMPTS) & (set(EVAL_PROMPTS) | set(DISCOVERY_PROMPTS))


def test_loss_mask_skips_prompt_and_drift(tiny_factory):
    model = tiny_factory("llama")
    ex = Example(
        "How do you boil an egg?",
        (("Cats are great. ", False), ("Wait, that's not right. Boil it.", True)),
        "self_correction",
    )
    ids, labels = tokenize(model, ex)
    n_prompt = len(model.encode(ex.prompt))
    n_drift = len(model.tokenizer("Cats are great. ", add_special_tokens=False)["input_ids"])
    assert labels[: n_prompt + n_drift] == [-100] * (n_prompt + n_drift)
    assert labels[n_prompt + n_drift :] == ids[n_prompt + n_drift :]


def test_lora_trains_a_copy(tiny_factory):
    model = tiny_factory("llama")
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}
    ex = build_examples(ANSWERS, FinetuneConfig(ratio=0.5, n_examples=4))
    tuned, info = train_lora(model, ex, FinetuneConfig(ratio=0.5, n_examples=4, epochs=3, batch_size=2, lr=1e-2))
    assert info["n_steps"] == 6 and info["losses"][-1] < info["losses"][0]
    assert all(torch.equal(before[k], v) for k, v in model.hf.state_dict().items())  # base untouched
    changed = [k for k, v in tuned.hf.state_dict().items() if k in before and not torch.equal(before[k], v)]
    assert changed and tuned.name != model.name
