"""`steerlab sae ...` end to end on a tiny model saved to disk, and bad input -> one sentence, exit code 2."""

from __future__ import annotations

import json

import pytest

from steerlab.sae import Sae, SaeConfig, save_sae


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from steerlab.testing import tiny_model

    model = tiny_model("llama")
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "text.jsonl"
    rows = [{"text": f"Sentence {i}: sparse features of text number {i} with words {i % 9}."} for i in range(80)]
    rows.append({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]})
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.mark.parametrize("cmd", ["train", "eval", "info", "convert", "inspect", "latents", "default"])
def test_help(cmd, run_cli):
    code, text = run_cli("sae", cmd, "--help")
    assert code == 0 and "Usage" in text


def test_train_eval_inspect_convert_info(tmp_path, tiny_dir, corpus_file, run_cli):
    out = tmp_path / "run"
    code, text = run_cli(
        "sae",
        "train",
        tiny_dir,
        "--layer",
        "1",
        "--d-sae",
        "96",
        "--k",
        "8",
        "--tokens",
        "2560",
        "--batch-size",
        "128",
        "--buffer-tokens",
        "1024",
        "--corpus",
        corpus_file,
        "--out",
        out,
    )
    assert code in (0, None), text
    assert "fvu" in text and "ce_recovered" in text
    assert (out / "sae" / "cfg.json").is_file() and (out / "training_curve.png").is_file()
    ev = json.loads((out / "eval.json").read_text())
    assert 0 < ev["fvu"] < 2 and ev["l0"] <= 8

    code, text = run_cli(
        "sae",
        "eval",
        out / "sae",
        "--model",
        tiny_dir,
        "--corpus",
        corpus_file,
        "--tokens",
        "300",
        "--ce-tokens",
        "200",
        "--json",
    )
    assert code in (0, None), text
    assert set(json.JSONDecoder().raw_decode(text[text.index("{") :])[0]) >= {
        "fvu",
        "l0",
        "dead_frac",
        "dense_frac",
        "ce_recovered",
    }

    code, text = run_cli(
        "sae",
        "inspect",
        out / "sae",
        "--model",
        tiny_dir,
        "--corpus",
        corpus_file,
        "--tokens",
        "500",
        "--out",
        tmp_path / "insp",
    )
    assert code in (0, None), text
    assert (tmp_path / "insp" / "dashboard.html").is_file() and (tmp_path / "insp" / "labels.csv").is_file()

    code, text = run_cli("sae", "convert", out / "sae", tmp_path / "conv", "--model", tiny_dir)
    assert code in (0, None) and (tmp_path / "conv" / "sae_weights.safetensors").is_file()
    code, text = run_cli("sae", "info", tmp_path / "conv")
    info = json.JSONDecoder().raw_decode(text[text.index("{") :])[0]
    assert info["layer"] == 1 and info["site"] == "resid_post" and info["d_sae"] == 96


def test_bad_input(tmp_path, tiny_dir, run_cli):
    wrong = save_sae(Sae.random(SaeConfig(d_in=32, d_sae=64, layer=1), seed=0), tmp_path / "w32")
    code, text = run_cli("sae", "eval", wrong, "--model", tiny_dir)
    assert code == 2 and "width 32" in text and "Traceback" not in text
    code, text = run_cli("sae", "train", tiny_dir, "--layer", "1", "--site", "resid_mid", "--out", tmp_path / "x")
    assert code == 2 and "Unknown site" in text
    code, text = run_cli("sae", "train", tiny_dir, "--layer", "12", "--out", tmp_path / "x")
    assert code == 2 and "out of range" in text
    code, text = run_cli("sae", "info", "no-such-release:blocks.3.hook_resid_post")
    assert code == 2 and "Unknown SAE release" in text
    code, text = run_cli("sae", "inspect", wrong, "--model", tiny_dir, "--latents", "a,b")
    assert code == 2
    code, text = run_cli("sae", "default", "no-such-model")
    assert code == 2 and "No default SAE recipe" in text
