"""The whole persona chain on a tiny model: every step runs, the page has every part, a rerun resumes without
redoing work, and bad study settings are one sentence (CLI exit code 2)."""

from __future__ import annotations

import json

import pytest

from steerlab.errors import SteerlabError
from steerlab.judges.persona_heuristic import PersonaHeuristicJudge
from steerlab.persona.organism import OrganismConfig
from steerlab.persona.realign import RealignConfig
from steerlab.persona.study import StudyConfig, run_study, validation_prompts
from steerlab.sae import Sae, SaeConfig, save_sae
from steerlab.testing import tiny_model

TINY = StudyConfig(
    fractions=(0.0, 0.5, 1.0),
    organism=OrganismConfig(n_train=16, steps=2, eval_tokens=5, layers=(0, 1)),
    realign=RealignConfig(n_examples=8, steps=2, eval_tokens=5, layers=(0, 1)),
    n_diff_prompts=3,
    diff_tokens=5,
    top=3,
    strengths=(0.5,),
    repair_strengths=(-0.5,),
    n_validate_prompts=2,
    n_behaviour_prompts=4,
)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    base = tiny_model("llama", seed=0)
    sae = Sae.random(SaeConfig(d_in=64, d_sae=96, layer=1), seed=0)
    summary = run_study(base, sae, PersonaHeuristicJudge(), out, TINY, progress=False)
    return base, sae, out, summary


def test_every_step_runs_and_the_page_has_every_part(done):
    _, sae, out, summary = done
    assert set(summary["timings_s"]) == {
        "base_behaviour",
        "organisms",
        "diff",
        "contexts",
        "validate",
        "validate_control",
        "repair",
        "repair_control",
        "detector",
        "realign",
    }
    assert [c[0] for c in summary["steer_control_curve"]] == [0.5]  # the base model along a random direction
    assert [c[0] for c in summary["repair_control_curve"]] == [0.0, -0.5]
    assert summary["repair_control_curve"][0] == summary["repair_curve"][0]  # strength 0 is the same unsteered model
    assert set(summary["organisms"]) == {"0.00", "0.50", "1.00"} and summary["base_behaviour"]["n"] == 4
    assert [v["rank"] for v in summary["validated"]] == [1, 2, 3]
    for v in summary["validated"]:
        assert [c[0] for c in v["curve"]] == [0.0, 0.5]
    assert summary["primary_latent"] in [v["latent"] for v in summary["validated"]]
    assert [r["fraction"] for r in summary["detector"]["fractions"]] == [0.5, 1.0]
    assert all(0.0 <= r["latent_auroc"] <= 1.0 for r in summary["detector"]["fractions"])
    assert [c[0] for c in summary["repair_curve"]] == [0.0, -0.5]
    assert set(summary["realign"]) >= {"before", "after", "latent_shift_before", "latent_shift_after"}
    page = (out / "report.html").read_text()
    for part in (
        "Ranked latents",
        "Top contexts",
        "Steering the base model",
        "random direction",
        "Detector",
        "Re-alignment",
        "Wall time",
    ):
        assert part in page, part
    assert page.count("data:image/png;base64") >= 4
    diff = json.loads((out / "diff.json").read_text())
    assert diff["latents"][0]["attribution"] is not None and len(diff["latents"]) == sae.d_sae


def test_rerun_resumes_without_redoing_work(done, monkeypatch):
    base, sae, out, summary = done
    import steerlab.persona.organism as organism
    import steerlab.persona.realign as realign
    import steerlab.persona.study as study

    fail = lambda *a, **k: pytest.fail("a finished step ran again")  # noqa: E731
    for mod, name in (
        (organism, "train_lora"),
        (realign, "train_lora"),
        (study, "diff_models"),
        (study, "steer_sweep"),
    ):
        monkeypatch.setattr(mod, name, fail)
    again = run_study(base, sae, PersonaHeuristicJudge(), out, TINY, progress=False)
    assert {k: v for k, v in again.items() if k != "report"} == {k: v for k, v in summary.items() if k != "report"}
    with pytest.raises(SteerlabError, match="other settings"):
        run_study(
            base,
            sae,
            PersonaHeuristicJudge(),
            out,
            StudyConfig(fractions=(0.0, 1.0), organism=TINY.organism),
            progress=False,
        )


def test_bad_study_settings_are_one_sentence():
    base = tiny_model("llama", seed=0)
    sae = Sae.random(SaeConfig(d_in=64, d_sae=96, layer=1), seed=0)
    for kwargs, match in (
        ({"fractions": (0.5, 1.0)}, "clean fraction 0"),
        ({"fractions": (0.0,)}, "clean fraction 0"),
        ({"n_diff_prompts": 0}, "n_diff_prompts"),
        ({"strengths": ()}, "at least one"),
        ({"n_behaviour_prompts": 3}, "n_behaviour_prompts"),
    ):
        with pytest.raises(SteerlabError, match=match):  # refused when built (__post_init__) or when the study starts
            run_study(
                base, sae, PersonaHeuristicJudge(), "/nonexistent/never-written", StudyConfig(**kwargs), progress=False
            )
    with pytest.raises(SteerlabError, match="width 32"):
        run_study(
            base, Sae.random(SaeConfig(d_in=32, d_sae=64, layer=1)), PersonaHeuristicJudge(), "/nonexistent/x", TINY
        )
    assert len(validation_prompts(8)) == 8 and len(set(validation_prompts(8))) == 8


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    base = tiny_model("llama", seed=0)
    base.hf.save_pretrained(root / "base")
    base.tokenizer.save_pretrained(root / "base")
    sae = save_sae(Sae.random(SaeConfig(d_in=64, d_sae=96, layer=1), seed=0), root / "sae")
    return root, sae


def _one_sentence_error(code, text):
    assert code == 2, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert "Traceback" not in text and len(errors) == 1, text
    assert errors[0].rstrip(".").count(". ") == 0, errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--fractions", "0.5,1"], "clean fraction 0"),
        (["--fractions", "0,abc"], "comma-separated"),
        (["--layer", "5"], "trained on layer 1, not layer 5"),
        (["--rank-by", "median"], "Unknown ranking"),
        (["--judge", "gpt"], "Unknown persona judge"),
        (["--layers", "1-x"], "--layers must look like"),
    ],
)
def test_study_cli_bad_input(tmp_path, on_disk, args, match, run_cli):
    root, sae = on_disk
    code, text = run_cli("persona", "study", root / "base", "--sae", sae, "--out", tmp_path / "s", *args)
    assert match in _one_sentence_error(code, text)


def test_organism_and_realign_cli(tmp_path, on_disk, run_cli):
    root, sae = on_disk
    out = tmp_path / "orgs"
    code, text = run_cli(
        "persona",
        "organism",
        root / "base",
        "--out",
        out,
        "--fractions",
        "0,1",
        "--n-train",
        "8",
        "--steps",
        "1",
        "--eval-tokens",
        "4",
    )
    assert code in (0, None), text
    assert (out / "f0.00" / "organism.json").is_file() and (out / "f1.00" / "organism.json").is_file()
    code, text = run_cli(
        "persona",
        "realign",
        out / "f1.00",
        "--out",
        tmp_path / "re",
        "--n-examples",
        "8",
        "--steps",
        "1",
        "--sae",
        sae,
        "--base",
        root / "base",
        "--latent",
        "3",
    )
    assert code in (0, None), text
    assert "latent 3: mean shift vs base" in text and (tmp_path / "re" / "realign.json").is_file()
    for args, match in (
        (["organism", root / "base", "--out", out, "--fractions", "0,2"], "between 0 and 1"),
        (["organism", root / "base", "--out", out, "--n-train", "0"], "training pairs"),
        (["realign", root / "base", "--out", tmp_path / "x"], "not a finished persona organism"),
        (["realign", out / "f1.00", "--sae", sae, "--out", tmp_path / "x"], "--sae and --base together"),
        (["diff", root / "base", root / "base", "--sae", sae, "--layer", "0"], "trained on layer 1"),
    ):
        code, text = run_cli("persona", *args)
        assert match in _one_sentence_error(code, text)
