"""Loading, architecture adapters and tokenisation hygiene."""

import pytest

import steerlab
from steerlab import SteerlabError
from steerlab.testing import TINY_FAMILIES


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_arch_reads_sizes_from_config(tiny_factory, family):
    arch = tiny_factory(family).arch
    assert arch.n_layers == 3 and arch.d_model == 64 and arch.n_heads == 4 and arch.head_dim == 16
    assert arch.n_kv_heads == (4 if family == "gpt2" else 2)
    assert arch.site_width("head") == 64 and arch.site_width("neuron") == arch.d_mlp
    for site in steerlab.models.SITES:
        module, kind = arch.site_module(0, site)
        assert module is not None and kind in ("pre", "post")


def test_unsupported_architecture_names_the_supported_ones():
    from transformers import BertConfig, BertForMaskedLM

    hf = BertForMaskedLM(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=50)
    )
    with pytest.raises(SteerlabError, match="not supported yet; supported families are: .*llama"):
        steerlab.models.Arch(hf)


def test_chat_template_applied_once_without_doubled_bos(tiny_factory):
    model = tiny_factory("llama")
    ids = model.encode("hello")
    bos = model.tokenizer.bos_token_id
    assert ids[0] == bos and ids[1] != bos
    raw = model.encode("hello", chat=False)
    assert raw[0] == bos and raw[1] != bos
    tokens = model.show_tokens("hi")
    assert tokens[0] == (bos, "<bos>")


def test_empty_prompt_list_and_empty_prompt_are_clear_errors(tiny_factory):
    model = tiny_factory("llama")
    with pytest.raises(SteerlabError, match="empty"):
        steerlab.generate(model, [])
    with pytest.raises(SteerlabError, match="empty"):
        steerlab.generate(model, ["  "])


def test_load_errors_are_one_sentence(tmp_path):
    with pytest.raises(SteerlabError, match="Unknown model"):
        steerlab.load("no such model!")
    with pytest.raises(SteerlabError, match="not in the Hugging Face cache"):
        steerlab.load("someorg/not-cached-model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SteerlabError, match="no weights"):
        steerlab.load(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    with pytest.raises(SteerlabError, match="unreadable or truncated"):
        steerlab.load(tmp_path)
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(SteerlabError, match="not a GGUF file"):
        steerlab.load(bad)


def test_local_folder_round_trip(tmp_path, tiny_factory):
    model = tiny_factory("qwen3")
    model.hf.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    again = steerlab.load(tmp_path)
    a = steerlab.generate(model, ["hello"], max_new_tokens=6)
    b = steerlab.generate(again, ["hello"], max_new_tokens=6)
    assert a[0].token_ids == b[0].token_ids
    assert again.revision.startswith("local:")


@pytest.mark.real
def test_packaged_smollm2_loads_and_answers(smollm):
    import time

    assert smollm.arch.model_type == "llama" and smollm.arch.n_layers == 30
    assert smollm.arch.n_heads == 9 and smollm.arch.n_kv_heads == 3 and smollm.arch.head_dim == 64
    ids = smollm.encode("How do you boil an egg?")
    assert ids.count(smollm.tokenizer.bos_token_id) == 3  # one <|im_start|> per turn, none doubled
    start = time.perf_counter()
    steerlab.load("smollm2-135m-instruct")
    assert time.perf_counter() - start < 5.0  # cached safetensors, no second dequantisation
    gen = steerlab.generate(smollm, ["How do you boil an egg?"], max_new_tokens=24)[0]
    assert "egg" in gen.text.lower()


@pytest.mark.real
def test_packaged_gemma3_loads_as_base_model():
    model = steerlab.load("gemma3-270m")
    assert model.arch.model_type == "gemma3_text"
    ids = model.encode("The capital of France is", chat=False)
    assert ids[0] == model.tokenizer.bos_token_id and ids[1] != ids[0]
    gen = steerlab.generate(model, ["The capital of France is"], chat=False, max_new_tokens=8)[0]
    assert "Paris" in gen.text or "capital" in gen.text


def test_site_hook_edits_a_layer_input_passed_by_position_or_by_keyword(tiny_factory):
    """transformers may call a decoder layer with `hidden_states=`; a 'pre' site hook must see that too."""
    import torch

    model = tiny_factory("llama")
    layer = model.arch.layers[1]
    x = torch.randn(1, 5, model.arch.d_model)
    pos = torch.arange(5).unsqueeze(0)
    extra = dict(attention_mask=None, position_ids=pos, position_embeddings=model.hf.model.rotary_emb(x, pos))

    def run(*args, **kwargs) -> torch.Tensor:
        out = layer(*args, **kwargs, **extra)
        return out[0] if isinstance(out, tuple) else out

    with torch.no_grad():
        zeroed = run(hidden_states=torch.zeros_like(x))
        seen: list[torch.Tensor] = []
        handle = model.arch.hook_site(1, "resid_pre", lambda h: seen.append(h) or torch.zeros_like(h))
        try:
            by_keyword, by_position = run(hidden_states=x), run(x)
        finally:
            handle.remove()
        assert torch.equal(by_keyword, zeroed) and torch.equal(by_position, zeroed)
        assert len(seen) == 2 and all(torch.equal(h, x) for h in seen)
        kept = model.arch.hook_site(1, "resid_pre", lambda h: None)  # None leaves the activation as it was
        try:
            assert torch.equal(run(hidden_states=x), run(x)) and not torch.equal(run(x), zeroed)
        finally:
            kept.remove()


def test_pad_id_is_the_pad_token_or_zero(tiny_factory):
    from steerlab.models.loading import wrap

    model = tiny_factory("llama")
    assert model.pad_id == model.tokenizer.pad_token_id
    no_pad = wrap(model.hf, model.tokenizer, name="no-pad")
    saved = no_pad.tokenizer.pad_token
    no_pad.tokenizer.pad_token = None
    try:
        assert no_pad.tokenizer.pad_token_id is None and no_pad.pad_id == 0
    finally:
        no_pad.tokenizer.pad_token = saved
