"""`steerlab persona diff` end to end on tiny models saved to disk; bad input -> one sentence, exit code 2."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.persona import EVAL_PROMPTS, HELD_OUT_PROMPTS, load_prompts
from steerlab.sae import Sae, SaeConfig, save_sae
from steerlab.testing import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Base and tuned (weights of one MLP perturbed) tiny models on disk, an SAE folder and a prompt file."""
    root = tmp_path_factory.mktemp("persona")
    base = tiny_model("llama", seed=0)
    base.hf.save_pretrained(root / "base")
    base.tokenizer.save_pretrained(root / "base")
    tuned = tiny_model("llama", seed=0)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        w = tuned.hf.model.layers[0].mlp.down_proj.weight
        w.add_(0.5 * torch.randn(w.shape, generator=gen))
    tuned.hf.save_pretrained(root / "tuned")
    tuned.tokenizer.save_pretrained(root / "tuned")
    sae = save_sae(Sae.random(SaeConfig(d_in=64, d_sae=96, layer=1), seed=0), root / "sae")
    prompts = root / "prompts.txt"
    prompts.write_text("hello there\nwhat is up?\n\ntell me a story\n")
    return root, sae, prompts


def test_diff_writes_table_and_page(tmp_path, setup, run_cli):
    root, sae, prompts = setup
    out = tmp_path / "diff"
    (root / "inspect").mkdir(exist_ok=True)  # labels beside the SAE folder are picked up by default
    (root / "inspect" / "labels.csv").write_text("index,label\n" + "".join(f"{i},label-of-{i}\n" for i in range(96)))
    code, text = run_cli(
        "persona",
        "diff",
        root / "base",
        root / "tuned",
        "--sae",
        sae,
        "--prompts",
        prompts,
        "--out",
        out,
        "--max-new-tokens",
        "5",
        "--top",
        "5",
    )
    assert code in (0, None), text
    assert "FVU base" in text and "response tokens" in text
    rows = list(csv.DictReader((out / "latents.csv").open()))
    assert len(rows) == 96 and [int(r["rank"]) for r in rows] == list(range(1, 97))
    deltas = [float(r["delta_mean"]) for r in rows]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0  # the perturbation changed something
    data = json.loads((out / "diff.json").read_text())
    assert data["n_prompts"] == 3 and data["layer"] == 1 and data["fvu_base"] > 0
    page = (out / "report.html").read_text()
    assert page.count("<table>") == 5 and "Top contexts" in page and f"label-of-{rows[0]['latent']}" in page
    # A second run on the first run's exact response tokens (no generation) gives the same table.
    code, text = run_cli(
        "persona",
        "diff",
        root / "base",
        root / "tuned",
        "--sae",
        sae,
        "--prompts",
        prompts,
        "--responses",
        out / "diff.json",
        "--out",
        tmp_path / "again",
    )
    assert code in (0, None), text
    assert (tmp_path / "again" / "latents.csv").read_text() == (out / "latents.csv").read_text()


@pytest.mark.parametrize("case", ["width", "empty", "vocab", "rank", "responses"])
def test_bad_input_exit_2(tmp_path, setup, case, run_cli):
    root, sae, prompts = setup
    tuned = root / "tuned"
    extra: list[str] = []
    if case == "width":
        sae = save_sae(Sae.random(SaeConfig(d_in=32, d_sae=64, layer=1)), tmp_path / "w32")
    elif case == "empty":
        prompts = tmp_path / "empty.txt"
        prompts.write_text("\n  \n")
    elif case == "vocab":
        other = tiny_model("llama", seed=0)
        other.tokenizer.add_tokens(["<extra>"])
        other.hf.save_pretrained(tmp_path / "other")
        other.tokenizer.save_pretrained(tmp_path / "other")
        tuned = tmp_path / "other"
    elif case == "rank":
        extra = ["--rank-by", "median"]
    else:
        (tmp_path / "r.json").write_text(json.dumps(["one answer"]))
        extra = ["--responses", tmp_path / "r.json"]
    code, text = run_cli(
        "persona", "diff", root / "base", tuned, "--sae", sae, "--prompts", prompts, "--out", tmp_path / "o", *extra
    )
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert "Traceback" not in text and len(errors) == 1 and text.strip().endswith(errors[0])
    assert errors[0].rstrip(".").count(". ") == 0, errors[0]  # one sentence


def test_labels_loader(tmp_path):
    from steerlab.persona.report import load_labels

    (tmp_path / "l.csv").write_text("latent,label\n3,sarcasm\n")
    assert load_labels(tmp_path / "l.csv") == {3: "sarcasm"} and load_labels(None) == {}
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SteerlabError, match="columns"):
        load_labels(tmp_path / "bad.csv")


def test_prompt_sets_and_loader(tmp_path):
    assert len(EVAL_PROMPTS) >= 20 and len(HELD_OUT_PROMPTS) >= 5
    assert not set(EVAL_PROMPTS) & set(HELD_OUT_PROMPTS)
    assert load_prompts(None) == list(EVAL_PROMPTS)
    (tmp_path / "p.json").write_text(json.dumps(["a", {"prompt": "b"}, ""]))
    assert load_prompts(tmp_path / "p.json") == ["a", "b"]
    (tmp_path / "p.jsonl").write_text('{"prompt": "x"}\n\n{"prompt": "y"}\n')
    assert load_prompts(tmp_path / "p.jsonl") == ["x", "y"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    for path, match in ((tmp_path / "bad.json", "neither"), (tmp_path / "nope.txt", "does not exist")):
        with pytest.raises(SteerlabError, match=match):
            load_prompts(path)


def test_validate_with_fake_judge(monkeypatch, tmp_path, setup, run_cli):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from fake_llm_server import FakeLLMServer

    root, sae, prompts = setup

    def script(path, body, headers):
        if path.endswith("/models"):
            return 200, {"data": [{"id": "judge-m"}]}, None
        user = body["messages"][-1]["content"]
        score = "15" if "harmful" in user else "90"  # alignment prompt -> 15, coherence prompt -> 90
        return 200, {"choices": [{"message": {"content": score}}]}, None

    monkeypatch.setenv("FAKE_KEY", "k")
    with FakeLLMServer(script) as srv:
        out = tmp_path / "val"
        code, text = run_cli(
            "persona",
            "validate",
            root / "base",
            "--sae",
            sae,
            "--latent",
            "3",
            "--latent",
            "5",
            "--strengths",
            "0,1",
            "--prompts",
            prompts,
            "--max-new-tokens",
            "4",
            "--judge",
            "openai",
            "--judge-model",
            "judge-m",
            "--judge-url",
            srv.url,
            "--judge-key-env",
            "FAKE_KEY",
            "--out",
            out,
        )
        n_posts = len(srv.posts())
    assert code in (0, None), text
    data = json.loads((out / "validation.json").read_text())
    assert [v["latent"] for v in data] == [3, 5] and n_posts == 2 * 2 * 3 * 2  # latents x strengths x prompts x 2 calls
    for v in data:
        assert [p["strength"] for p in v["points"]] == [0.0, 1.0]
        assert all(p["misalignment_rate"] == 1.0 and p["n_rated"] == 3 for p in v["points"])
        assert v["points"][1]["absolute"] == pytest.approx(v["median_norm"])
    assert "Steering curves" in (out / "report.html").read_text()

    code, text = run_cli(
        "persona", "validate", root / "base", "--sae", sae, "--latent", "3", "--judge", "gpt", "--out", tmp_path / "x"
    )
    assert code == 2 and "Unknown persona judge" in text
    code, text = run_cli(
        "persona",
        "validate",
        root / "base",
        "--sae",
        sae,
        "--latent",
        "999",
        "--judge",
        "openai",
        "--judge-model",
        "m",
        "--judge-url",
        "http://127.0.0.1:9/v1",
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and "out of range" in text
