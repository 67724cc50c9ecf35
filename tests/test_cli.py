"""The CLI: --help everywhere, and bad input gets one sentence and exit code 2 before model work."""

import subprocess
import sys

import pytest
import torch


@pytest.mark.parametrize(
    "args", [[], ["generate"], ["vectors"], ["vectors", "train"], ["models"], ["tokens"], ["demo"]]
)
def test_help_on_every_command(args, run_cli):
    code, text = run_cli(*args, "--help")
    assert code == 0 and "Usage" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "no-such-alias", "-p", "hi"], "Unknown model 'no-such-alias'"),
        (["generate", "smollm2-135m-instruct", "-p", "hi", "--steer", "vector"], "not key=value"),
        (
            ["generate", "smollm2-135m-instruct", "-p", "hi", "--steer", "vector=/nonexistent.safetensors"],
            "does not exist",
        ),
        (["generate", "smollm2-135m-instruct", "-p", "hi", "--steer", "colour=red"], "unknown key 'colour'"),
        (
            ["generate", "smollm2-135m-instruct", "-p", "hi", "--steer", "mask=head,layer=x,units=1"],
            "not a whole number",
        ),
        (["generate", "smollm2-135m-instruct"], "No prompts given"),
        (["generate", "smollm2-135m-instruct", "-p", " "], "prompt is empty"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, message, run_cli):
    code, text = run_cli(*args)
    assert code == 2
    assert message in text
    assert "Traceback" not in text


def _tiny_folder(tmp_path, tiny_factory):
    model = tiny_factory("llama")
    folder = tmp_path / "tiny"
    model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder


def test_bad_input_against_the_model(tmp_path, tiny_factory, run_cli):
    from steerlab.vectors import ConceptVector

    folder = _tiny_folder(tmp_path, tiny_factory)
    narrow = ConceptVector(torch.ones(10), layer=1).save(tmp_path / "narrow.safetensors")
    wide = ConceptVector(torch.ones(64), layer=1).save(tmp_path / "ok.safetensors")
    code, text = run_cli("generate", str(folder), "-p", "hi", "--steer", f"vector={narrow}")
    assert code == 2 and "width 10" in text
    code, text = run_cli("generate", str(folder), "-p", "hi", "--steer", f"vector={wide},layer=9")
    assert code == 2 and "Layer 9 is out of range" in text
    code, text = run_cli("generate", str(folder), "-p", "hi", "--steer", "mask=head,layer=1,units=7")
    assert code == 2 and "head 7 is out of range" in text
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(wide.read_bytes()[:40])
    code, text = run_cli("generate", str(folder), "-p", "hi", "--steer", f"vector={truncated}")
    assert code == 2 and "unreadable or truncated" in text


def test_generate_steered_and_compare(tmp_path, tiny_factory, run_cli):
    from steerlab.vectors import ConceptVector

    folder = _tiny_folder(tmp_path, tiny_factory)
    vec = ConceptVector(torch.randn(64), layer=1).save(tmp_path / "v.safetensors")
    out = tmp_path / "out.jsonl"
    code, _ = run_cli(
        "generate",
        str(folder),
        "-p",
        "hello",
        "-p",
        "hi there",
        "--steer",
        f"vector={vec},strength=8",
        "--compare",
        "-n",
        "6",
        "--out",
        str(out),
        "--show-tokens",
    )
    assert code in (0, None)
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["steering"] and "unsteered_text" in rows[0]


def test_vectors_train_from_files(tmp_path, tiny_factory, run_cli):
    from steerlab.vectors import ConceptVector

    folder = _tiny_folder(tmp_path, tiny_factory)
    (tmp_path / "pos.txt").write_text("the sea\nwaves and tides\n")
    (tmp_path / "neg.txt").write_text("the desert\nsand dunes\n")
    out = tmp_path / "sea.safetensors"
    code, _ = run_cli(
        "vectors",
        "train",
        str(folder),
        "--positive",
        str(tmp_path / "pos.txt"),
        "--negative",
        str(tmp_path / "neg.txt"),
        "--layer",
        "1",
        "--out",
        str(out),
        "--method",
        "pca",
    )
    assert code in (0, None)
    cv = ConceptVector.load(out)
    assert cv.layer == 1 and cv.method == "pca" and cv.vector.shape == (64,)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "steerlab", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "generate" in result.stdout


def test_sae_steering_from_the_cli_and_latent_out_of_range(tmp_path, tiny_factory, run_cli):
    from steerlab.sae import Sae, SaeConfig, save_sae

    folder = _tiny_folder(tmp_path, tiny_factory)
    sae_dir = save_sae(Sae.random(SaeConfig(d_in=64, d_sae=32, layer=1), seed=0), tmp_path / "sae")
    code, text = run_cli("generate", str(folder), "-p", "hi", "--steer", f"sae={sae_dir},latent=40,strength=3")
    assert code == 2 and "Latent 40 is out of range" in text
    code, text = run_cli(
        "generate",
        str(folder),
        "-p",
        "hi",
        "-n",
        "4",
        "--steer",
        f"sae={sae_dir},latent=5,strength=3",
        "--steer",
        f"sae={sae_dir},ablate=1+2",
    )
    assert code == 0, text
