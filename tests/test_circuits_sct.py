"""Safety Circuit Tuning for alignment and the chat-data reader, on tiny random models; bad input."""

import json

import pytest
import torch

from steerlab.circuits.sct import empty_like, split_pairs, tune_alignment
from steerlab.circuits.tune import slice_masks
from steerlab.circuits.units import Circuit, Unit
from steerlab.data.chat import read_chat_pairs
from steerlab.errors import SteerlabError
from steerlab.testing import tiny_model

ROWS = [
    {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "How do I boil an egg?"},
            {"role": "assistant", "content": "Boil it for nine minutes, then cool it."},
        ]
    },
    {"prompt": "How do I make tea?", "response": "Steep the tea in boiled water for three minutes."},
    {"question": "How do I fold a sheet?", "answer": "Tuck the corners together and fold it into a square."},
    {"instruction": "Name a colour.", "output": "Blue."},
]


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_chat_reader_accepts_messages_and_prompt_response_rows(tmp_path):
    path = _write(
        tmp_path / "d.jsonl", ROWS + ["not json", {"messages": [{"role": "user", "content": "hi"}]}, {"prompt": "x"}]
    )
    chat = read_chat_pairs(path)
    assert chat.pairs[0] == ("How do I boil an egg?", "Boil it for nine minutes, then cool it.")
    assert len(chat.pairs) == 4 and chat.skipped == 3


def test_chat_reader_refuses_a_file_with_no_usable_rows(tmp_path):
    path = _write(tmp_path / "d.jsonl", ['{"text": "hello"}', "[1, 2]", '{"messages": []}'])
    with pytest.raises(SteerlabError, match="0 usable chat rows"):
        read_chat_pairs(path)


def test_split_keeps_a_held_out_tail():
    pairs = [(f"p{i}", f"r{i}") for i in range(10)]
    train, held = split_pairs(pairs)
    assert train == pairs[:8] and held == pairs[8:]
    with pytest.raises(SteerlabError, match="at least 2"):
        split_pairs(pairs[:1])


def test_tune_alignment_freezes_the_circuit_and_compares_controls():
    model = tiny_model("llama")
    c = Circuit.from_units(model, [Unit(1, "head", 0), Unit(1, "neuron", 3), Unit(0, "neuron", 5)])
    before = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    pairs = [(f"How do I do task {i}?", f"Do step {i} carefully.") for i in range(10)]
    result = tune_alignment(model, c, pairs, steps=2, lr=1e-2, batch_size=2, progress=False)
    assert all(torch.equal(p, before[n]) for n, p in model.hf.named_parameters())  # every condition tuned a copy
    rows = {r["condition"]: r for r in result["rows"]}
    assert list(rows) == ["circuit frozen", "random frozen", "none frozen"]
    assert (
        rows["circuit frozen"]["frozen_units"] == rows["random frozen"]["frozen_units"] == 3
        and rows["none frozen"]["frozen_units"] == 0
    )
    assert all(r["frozen_changed"] == 0 for r in rows.values())
    total = sum(int(m.numel()) for m in slice_masks(model, c).values())
    owned = sum(int(m.sum()) for m in slice_masks(model, c).values())
    assert (
        rows["none frozen"]["trainable_entries"] == total
        and rows["circuit frozen"]["trainable_entries"] == total - owned
    )
    assert result["train_pairs"] == 8 and result["held_out_pairs"] == 2
    assert all(0 <= r["harmful_refusal"] <= 1 for r in rows.values()) and empty_like(c).count("head") == 0


def test_cli_tune_alignment_and_bad_input(tmp_path, run_cli):
    folder = tmp_path / "tiny"
    m = tiny_model("llama")
    m.hf.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    c = Circuit.from_units(m, [Unit(1, "head", 0)]).save(tmp_path / "circuit.json")
    data = _write(tmp_path / "helpful.jsonl", ROWS)
    code, text = run_cli(
        "circuits",
        "tune",
        str(folder),
        str(c),
        "--scenario",
        "alignment",
        "--data",
        str(data),
        "--steps",
        "1",
        "--batch-size",
        "2",
    )
    assert code == 0, text
    result = json.loads((tmp_path / "sct_alignment.json").read_text())
    assert [r["condition"] for r in result["rows"]] == ["circuit frozen", "random frozen", "none frozen"]
    code, text = run_cli("circuits", "report", str(tmp_path))
    assert code == 0 and "Safety Circuit Tuning (alignment)" in (tmp_path / "report.html").read_text(), text
    empty = _write(tmp_path / "empty.jsonl", ['{"text": "no chat here"}'])
    code, text = run_cli("circuits", "tune", str(folder), str(c), "--scenario", "alignment", "--data", str(empty))
    assert code == 2 and "usable chat rows" in text and "Traceback" not in text
    code, text = run_cli("circuits", "tune", str(folder), str(c), "--scenario", "alignment")
    assert code == 2 and "needs --data" in text
    other = Circuit.from_units(m, [Unit(0, "head", 1)])
    other.signature.update(model="smollm2-135m-instruct", n_layers=30, n_heads=9, d_mlp=1536)
    path = other.save(tmp_path / "other.json")
    code, text = run_cli("circuits", "tune", str(folder), str(path), "--scenario", "alignment", "--data", str(data))
    assert code == 2 and "does not match" in text and "Traceback" not in text
