"""Tiny random-weight models for fast tests: every family steerlab supports, no download needed."""

from __future__ import annotations

import torch

from steerlab.models.loading import Model, wrap

SPECIALS = ["<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'system' %}{{ m['content'] }}\n{% else %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer(chat: bool = True):
    """A byte-level tokenizer (5 specials + 256 bytes) built in memory, BOS added to raw text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_chars = list(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _config(family: str, vocab: int):
    import transformers as tf

    common = dict(vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    llama_like = dict(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        **common,
    )
    if family == "llama":
        return tf.LlamaConfig(**llama_like)
    if family == "mistral":
        return tf.MistralConfig(**llama_like, sliding_window=None)
    if family == "qwen2":
        return tf.Qwen2Config(**llama_like)
    if family == "qwen3":
        return tf.Qwen3Config(**llama_like)
    if family == "gemma2":
        return tf.Gemma2Config(**llama_like, query_pre_attn_scalar=16, sliding_window=8)
    if family == "gemma3":
        return tf.Gemma3TextConfig(**llama_like, query_pre_attn_scalar=16, sliding_window=8)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=64, n_layer=3, n_head=4, n_positions=256, n_inner=128, **common)
    raise ValueError(f"no tiny config for {family}")


TINY_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gpt2")


def tiny_model(family: str = "llama", seed: int = 0, chat: bool = True) -> Model:
    """A random-weight fp32 model of a family, sized for millisecond forwards."""
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer(chat=chat)
    torch.manual_seed(seed)
    config = _config(family, len(tok))
    config._attn_implementation = "sdpa" if family != "gemma2" else "eager"
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random init is near-uniform; sharpen it so greedy choices are not near-ties
        for p in hf.parameters():
            if p.ndim == 2:
                p.mul_(3.0)
    hf.generation_config.eos_token_id = 2
    return wrap(hf, tok, name=f"tiny-{family}")
