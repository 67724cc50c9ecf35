"""The shared LoRA trainer: loss masking, base untouched, loss falls, the recipe's layer restriction holds."""

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.training import LoraRecipe, encode_example, encode_pair, right_pad, train_lora


def test_encode_example_masks_untrained_segments_and_trains_the_closing_token(tiny_factory):
    model = tiny_factory("llama")
    ids, labels = encode_example(model, "Q?", (("off ", False), ("on topic", True)))
    n_prompt = len(model.encode("Q?"))
    n_off = len(model.tokenizer("off ", add_special_tokens=False)["input_ids"])
    assert labels[: n_prompt + n_off] == [-100] * (n_prompt + n_off)
    assert labels[n_prompt + n_off :] == ids[n_prompt + n_off :]
    assert ids[-1] == (model.stop_token_ids[0] if model.stop_token_ids else model.tokenizer.eos_token_id)


def test_right_pad_marks_padding_out_of_the_loss():
    ids, labels, mask = right_pad([([1, 2, 3], [-100, 2, 3]), ([4], [4])], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert labels.tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_lora_copy_leaves_base_untouched_and_lowers_the_loss(tiny_factory):
    model = tiny_factory("qwen2")
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}
    data = [encode_pair(model, f"question {i}", "the same fixed reply") for i in range(4)]
    tuned, info = train_lora(model, data, LoraRecipe(rank=4, lr=1e-2, steps=8, batch_size=2), progress=False)
    assert info["n_steps"] == 8 and info["losses"][-1] < info["losses"][0]
    assert all(torch.equal(before[k], v) for k, v in model.hf.state_dict().items())
    changed = {k for k, v in tuned.hf.state_dict().items() if not torch.equal(before[k], v)}
    assert changed


def test_layer_restriction_changes_only_those_layers(tiny_factory):
    model = tiny_factory("llama")
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}
    data = [encode_pair(model, "hi", "reply") for _ in range(2)]
    tuned, _ = train_lora(model, data, LoraRecipe(rank=2, lr=1e-2, steps=3, batch_size=2, layers=(1,)), progress=False)
    changed = {k for k, v in tuned.hf.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(".layers.1." in k for k in changed)


def test_prepare_hook_can_mask_adapter_gradients(tiny_factory):
    model = tiny_factory("llama")
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}
    data = [encode_pair(model, "hi", "reply") for _ in range(2)]

    def freeze_layer_0(peft_model):
        for name, p in peft_model.named_parameters():
            if "lora_B" in name and ".layers.0." in name:
                p.register_hook(lambda g: g * 0)

    tuned, _ = train_lora(
        model, data, LoraRecipe(rank=2, lr=1e-2, steps=3, batch_size=2), progress=False, prepare=freeze_layer_0
    )
    changed = {k for k, v in tuned.hf.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and not any(".layers.0." in k for k in changed)


def test_bad_recipes_and_empty_data_say_one_sentence(tiny_factory):
    model = tiny_factory("llama")
    with pytest.raises(SteerlabError):
        LoraRecipe(steps=0)
    with pytest.raises(SteerlabError):
        train_lora(model, [], LoraRecipe(), progress=False)
    with pytest.raises(SteerlabError):
        train_lora(model, [([1, 2], [-100, -100])], LoraRecipe(), progress=False)
