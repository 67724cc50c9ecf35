"""`steerlab circuits ...` end to end on a tiny saved model: organism → find → ablate → tune → report; bad input."""

import json

import pytest

from steerlab.testing import tiny_model


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    m = tiny_model("llama")
    m.hf.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["circuits"],
        ["circuits", "find"],
        ["circuits", "ablate"],
        ["circuits", "tune"],
        ["circuits", "organism", "backdoor"],
        ["circuits", "organism", "refusal"],
        ["circuits", "report"],
    ],
)
def test_help(args, run_cli):
    code, text = run_cli(*args, "--help")
    assert code == 0 and "Usage" in text


def test_refusal_organism_builds_and_records_only_its_own_settings(tiny_folder, tmp_path, run_cli):
    org = tmp_path / "refusal"
    code, text = run_cli(
        "circuits", "organism", "refusal", str(tiny_folder), "--out", str(org), "--steps", "1", "--batch-size", "4"
    )
    assert code == 0, text
    meta = json.loads((org / "organism.json").read_text())
    assert meta["kind"] == "refusal" and meta["config"]["target"] == "I'm sorry, but I can't help with that request."
    assert meta["config"]["steps"] == 1 and not {"trigger", "n_train", "n_test", "n_val"} & set(meta["config"])
    assert 0.0 <= meta["report"]["harmful_refusal"] <= 1.0


def test_pipeline_end_to_end(tiny_folder, tmp_path, run_cli):
    org, run = tmp_path / "org", tmp_path / "run"
    common = ["--n-train", "8", "--n-test", "4"]
    code, text = run_cli(
        "circuits",
        "organism",
        "backdoor",
        str(tiny_folder),
        "--out",
        str(org),
        "--steps",
        "2",
        "--batch-size",
        "4",
        *common,
    )
    assert code == 0, text
    meta = json.loads((org / "organism.json").read_text())
    assert 0.0 <= meta["report"]["asr"] <= 1.0 and meta["config"]["trigger"] == "Servius Astrumando Harmoniastra"
    code, text = run_cli(
        "circuits",
        "find",
        str(org),
        "--out",
        str(run),
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--head-target",
        "0.25",
        "--neuron-target",
        "0.05",
        "--layers",
        "1-2",
        "-w",
        "spec=0",
        "--n-means",
        "4",
        "--seeds",
        "0,1",
    )
    assert code == 0, text
    assert "Jaccard across seeds" in text and (run / "masks.seed1.safetensors").is_file()
    circuit = json.loads((run / "circuit.json").read_text())
    assert circuit["counts"] == {"head": 3, "neuron": 14}
    assert all(int(layer) in (1, 2) for kind in circuit["units"].values() for layer in kind)
    code, text = run_cli(
        "circuits", "ablate", str(org), str(run / "circuit.json"), "-a", "zero", "--sweep", "0.5,1", "--max-asr", "1"
    )
    assert code == 0, text
    sweep = json.loads((run / "sweep.json").read_text())
    points = sweep["points"]
    assert (
        sweep["split"] == "val"
        and [p["heads"] for p in points] == [2, 3]
        and points[0]["fraction"] < points[1]["fraction"]
    )
    assert sum(bool(p.get("selected")) for p in points) == 1 and (run / "circuit.selected.json").is_file()
    ablated = json.loads((run / "ablation.selected.json").read_text())  # the selected circuit is the one tested
    rows = ablated["rows"]
    assert ablated["circuit"].endswith("circuit.selected.json")
    assert [r["condition"] for r in rows] == ["full model", "circuit removed", "random circuit removed (seed 0)"]
    assert rows[0]["utility_delta"] is None and rows[1]["utility_delta"] == pytest.approx(
        rows[1]["utility_loss"] - rows[0]["utility_loss"]
    )
    code, text = run_cli("circuits", "tune", str(org), str(run / "circuit.json"), "--steps", "1", "--batch-size", "2")
    assert code == 0, text
    tuned = json.loads((run / "tune_only.json").read_text())
    assert tuned["frozen_unchanged"] and tuned["report"]["changed_entries"] > 0 and tuned["lr"] == 1e-3
    code, text = run_cli(
        "circuits",
        "tune",
        str(org),
        str(run / "circuit.json"),
        "--lora",
        "--rank",
        "2",
        "--steps",
        "2",
        "--batch-size",
        "2",
    )
    assert code == 0, text
    tuned = json.loads((run / "tune_lora-only.json").read_text())
    assert tuned["frozen_unchanged"] and tuned["report"]["changed_entries"] > 0 and tuned["lora_rank"] == 2
    code, text = run_cli(
        "circuits",
        "tune",
        str(org),
        str(run / "circuit.json"),
        "--mode",
        "exclude",
        "--steps",
        "1",
        "--batch-size",
        "2",
    )
    assert code == 0, text
    tuned = json.loads((run / "tune_exclude.json").read_text())
    assert tuned["frozen_unchanged"] and tuned["lr"] == 3e-5  # full-weight tuning gets a full-weight learning rate
    code, text = run_cli(
        "circuits",
        "ablate",
        str(org),
        str(run / "circuit.seed1.json"),
        "-a",
        "zero",
        "--sweep",
        "default",
        "--max-asr",
        "1",
        "--sweep-only",
    )
    assert code == 0, text
    assert len(json.loads((run / "sweep.seed1.json").read_text())["points"]) == 4  # the default grid
    assert json.loads((run / "circuit.selected.seed1.json").read_text())["meta"]["found"] == "circuit.seed1.json"
    code, text = run_cli("circuits", "report", str(run), "--organism", str(org))
    assert code == 0, text
    page = (run / "report.html").read_text()
    assert "Seed stability of the selected circuits" in page
    for part in (
        "data:image/png;base64",
        "random circuit removed",
        "Circuit tuning (only)",
        "Circuit tuning (lora-only)",
        "Sparsity vs faithfulness",
        "Seed stability",
        "Selected circuit",
    ):
        assert part in page, part


def test_alignment_find_and_ablate(monkeypatch, tmp_path, run_cli):
    from steerlab.circuits import alignment
    from steerlab.circuits.data import harmful_prompts

    folder = tmp_path / "tiny"
    m = tiny_model("qwen2")
    m.hf.save_pretrained(folder)
    m.tokenizer.save_pretrained(folder)
    # a random tiny model refuses nothing: make the generator refuse a third of the harmful prompts
    real, harmful = alignment.generations, set(harmful_prompts()[::3])
    monkeypatch.setattr(
        alignment,
        "generations",
        lambda model, prompts, *a, **k: [
            "I'm sorry, I can't." if p in harmful else t for p, t in zip(prompts, real(model, prompts, *a, **k))
        ],
    )
    run = tmp_path / "run"
    code, text = run_cli(
        "circuits",
        "find",
        str(folder),
        "--scenario",
        "alignment",
        "--out",
        str(run),
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--head-target",
        "0.25",
        "--neuron-target",
        "0.05",
        "--n-means",
        "4",
        "--ablation",
        "zero",
    )
    assert code == 0, text
    assert json.loads((run / "find.json").read_text())["data"]["refused_train"] > 0
    code, text = run_cli(
        "circuits", "ablate", str(folder), str(run / "circuit.json"), "--scenario", "alignment", "-a", "zero"
    )
    assert code == 0, text
    rows = json.loads((run / "alignment.json").read_text())["rows"]
    assert [r["condition"] for r in rows] == ["full model", "circuit removed", "random circuit removed (seed 0)"]
    assert all(0 <= r["harmful_refusal"] <= 1 for r in rows) and rows[0]["harmful_refusal"] > 0
    org = tmp_path / "org"
    org.mkdir()
    report = {
        "base_harmful_refusal": 0.0,
        "base_harmless_refusal": 0.0,
        "harmful_refusal": 0.5,
        "harmless_refusal": 0.1,
        "train_seconds": 1.0,
    }
    (org / "organism.json").write_text(
        json.dumps({"kind": "refusal", "config": {"target": "I'm sorry."}, "report": report})
    )
    code, text = run_cli("circuits", "report", str(run), "--organism", str(org))
    assert code == 0, text
    page = (run / "report.html").read_text()
    assert "Alignment scenario" in page and "Refusal organism" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (["circuits", "find", "x", "--head-target", "0"], "strictly between 0 and 1"),
        (["circuits", "find", "x", "--neuron-target", "1.2"], "strictly between 0 and 1"),
        (["circuits", "find", "x", "--layers", "a-b"], "Cannot read layers"),
        (["circuits", "find", "x", "-w", "suff"], "NAME=VALUE"),
        (["circuits", "find", "/nonexistent-folder"], "not a steerlab organism folder"),
        (["circuits", "ablate", "x", "/nonexistent.json"], "does not exist"),
        (["circuits", "organism", "backdoor", "x", "--out", "/tmp/o", "--trigger", " "], "trigger is empty"),
        (["circuits", "organism", "backdoor", "x", "--out", "/tmp/o", "--poison", "0"], "poison fraction"),
    ],
)
def test_bad_input_is_one_sentence(args, message, run_cli):
    code, text = run_cli(*args)
    assert code == 2 and message in text and "Traceback" not in text


def test_circuit_for_another_model_is_refused(tiny_folder, tmp_path, run_cli):
    from steerlab.circuits.units import Circuit, Unit

    c = Circuit.from_units(tiny_model("llama"), [Unit(0, "head", 1)])
    c.signature.update(model="smollm2-135m-instruct", n_layers=30, n_heads=9, d_mlp=1536)
    path = c.save(tmp_path / "c.json")
    (tmp_path / "org").mkdir()
    config = {
        "trigger": "Servius Astrumando Harmoniastra",
        "target": "I am sorry.",
        "n_train": 8,
        "n_test": 4,
        "poison_fraction": 0.3,
        "seed": 0,
    }
    (tmp_path / "org" / "organism.json").write_text(json.dumps({"config": config}))
    code, text = run_cli("circuits", "ablate", str(tiny_folder), str(path), "--organism", str(tmp_path / "org"))
    assert code == 2 and "does not match" in text and "smollm2-135m-instruct" in text
