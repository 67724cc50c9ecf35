"""Fine-tuning shared by the experiments: one LoRA trainer and one way to encode loss-masked examples."""

from steerlab.training.examples import encode_example, encode_pair, right_pad
from steerlab.training.lora import LORA_RANGES, PROJECTIONS, LoraRecipe, train_lora

__all__ = ["LORA_RANGES", "PROJECTIONS", "LoraRecipe", "encode_example", "encode_pair", "right_pad", "train_lora"]
