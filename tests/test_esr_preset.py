"""`--preset paper`: the resolved config matches the original code's settings field by field (spec/esr.md), and
the detector options (fixed set, strict rule, span) and their bad input."""

import json
import subprocess
import sys

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.esr.config import EsrConfig, apply_preset, preset_values
from steerlab.esr.detectors import contrast, read_detector_ids, strict_rule

# The original's values, each with where spec/esr.md states it.
ORIGINAL_70B = {
    "max_new_tokens": 512,  # §3 max_tokens=512
    "calib_max_new_tokens": 256,  # §3 calibration 512 // 2
    "temperature": 0.6,  # §3
    "repetition_penalty": 1.2,  # §3 "70b" -> 1.2
    "target": 30.0,  # §5 target 0.3
    "calib_steps": 10,  # §5 70B: 10 steps
    "calib_prompts": 5,  # §5 70B: 5 prompts per step
    "calib_upper": 100.0,  # §5 bounds [0, 100]
    "calib_prior_mean": 7.0,  # §5 prior N(7, 5)
    "calib_prior_std": 5.0,
    "calib_estimator": "median",  # §5 the final posterior median
    "steer_layer": 33,  # §1 steering layer 33 (SAE trained at 50)
    "ablation_layer": "steering",  # §2 clamps at the steering layer
    "prompts_per_latent": 5,  # §10 n_trials_per_feature = 5
    "seeds_per_prompt": 1,
    "judge_prompt": "full",  # §10 exp. 5: the judge sees the prompt as sent
    "judge_temperature": None,  # §6 no temperature set
    "judge_anchors": False,  # §6 the rubric has no anchors
    "rubric": "faithful",
    "detector_rule": "strict",  # §10 exp. 3: zero on normal, >= 80% of shuffled
    "detector_span": "all",  # §10 exp. 3: max over all token positions
    "n_detectors": 0,  # every latent the rule passes
    "discovery_answers": 1,  # §10 exp. 3: one answer per prompt
    "discovery_derangements": 1,  # one derangement
    "preset": "paper",
}
PER_MODEL = {  # §5 bounds and priors, §3 penalties, §1 steering layers
    "meta-llama/Llama-3.1-8B-Instruct": {
        "calib_upper": 50.0,
        "calib_prior_mean": 10.0,
        "calib_prior_std": 10.0,
        "calib_prompts": 1,
        "repetition_penalty": 1.15,
        "steer_layer": 12,
    },
    "google/gemma-2-2b-it": {
        "calib_upper": 300.0,
        "calib_prior_mean": 150.0,
        "calib_prior_std": 75.0,
        "repetition_penalty": 1.1,
        "steer_layer": None,
    },
    "google/gemma-2-9b-it": {
        "calib_upper": 560.0,
        "calib_prior_mean": 280.0,
        "calib_prior_std": 280.0,
        "repetition_penalty": 1.1,
        "steer_layer": None,
    },
    "google/gemma-2-27b-it": {
        "calib_upper": 5000.0,
        "calib_prior_mean": 1500.0,
        "calib_prior_std": 1500.0,
        "repetition_penalty": 1.1,
    },
}


def test_paper_preset_for_llama_70b_matches_the_original_field_by_field():
    cfg = EsrConfig(**apply_preset("paper", {"model": "meta-llama/Llama-3.3-70B-Instruct"}))
    resolved = cfg.to_dict()
    print("resolved --preset paper config (Llama-3.3-70B):\n" + json.dumps(resolved, indent=1))
    for field, value in ORIGINAL_70B.items():
        assert resolved[field] == value, (field, resolved[field], value)


@pytest.mark.parametrize("model", sorted(PER_MODEL))
def test_paper_preset_bounds_per_model(model):
    cfg = EsrConfig(**apply_preset("paper", {"model": model})).to_dict()
    print(model, {k: cfg[k] for k in PER_MODEL[model]})
    for field, value in PER_MODEL[model].items():
        assert cfg[field] == value, (model, field)
    assert cfg["max_new_tokens"] == 512 and cfg["calib_max_new_tokens"] == 256 and cfg["calib_steps"] == 10


def test_unknown_models_keep_automatic_bounds_and_explicit_options_win():
    cfg = EsrConfig(
        **apply_preset("paper", {"model": "smollm2-135m-instruct", "max_new_tokens": 64}, explicit={"max_new_tokens"})
    )
    assert (
        cfg.calib_upper is None
        and cfg.max_new_tokens == 64
        and cfg.calib_max_new_tokens == 256
        and cfg.repetition_penalty == 1.1
    )
    assert EsrConfig(**apply_preset("default", {"model": "x"})) == EsrConfig(model="x")
    assert preset_values("default", "x") == {}


def test_unknown_preset_is_one_sentence():
    with pytest.raises(SteerlabError, match=r"^Unknown preset 'fast'; choose one of: default, paper\.$"):
        apply_preset("fast", {})
    with pytest.raises(SteerlabError, match="Unknown preset"):
        EsrConfig(preset="fast")


def test_strict_rule_is_the_originals():
    normal = torch.tensor([[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0]])
    shuffled = torch.tensor(
        [[1.0, 0.2, 2.0, 0.0], [1.0, 0.3, 2.0, 0.1], [0.0, 0.3, 2.0, 0.0], [1.0, 0.4, 2.0, 0.0], [2.0, 0.0, 2.0, 0.0]]
    )
    # latent 0: never on normal, 4/5 shuffled (>= 80%); latent 1: 4/5 too, smaller mean; 2 fires on normal; 3 on 1/5.
    assert strict_rule(normal, shuffled) == [0, 1]
    picked = contrast(normal, shuffled, n=0, min_auc=0.5, rule="strict")
    assert picked["detectors"] == [0, 1] and picked["rule"] == "strict"
    assert contrast(normal, shuffled, n=1, min_auc=0.5, rule="strict")["detectors"] == [0]
    assert contrast(normal, shuffled, n=8, min_auc=0.5, rule="contrast")["detectors"][0] in (0, 1, 2)


def test_detector_ids_from_text_and_files(tmp_path):
    assert read_detector_ids("5, 9,5") == (5, 9)
    (tmp_path / "a.json").write_text(json.dumps({"off_topic_detectors": [6527, 7517]}))
    (tmp_path / "b.json").write_text("[1, 2, 3]")
    (tmp_path / "c.txt").write_text("4\n8 15\n")
    assert read_detector_ids(str(tmp_path / "a.json")) == (6527, 7517)
    assert read_detector_ids(str(tmp_path / "b.json")) == (1, 2, 3)
    assert read_detector_ids(str(tmp_path / "c.txt")) == (4, 8, 15)
    (tmp_path / "bad.json").write_text('["x"]')
    for text, needle in (
        (str(tmp_path / "bad.json"), "must hold non-negative integer latent ids"),
        ("1,-2", "non-negative"),
        (str(tmp_path / "missing.json"), "No detectors file"),
    ):
        with pytest.raises(SteerlabError, match=needle):
            read_detector_ids(text)


def test_detector_ids_out_of_range_stop_before_any_work(tiny_factory):
    from steerlab.esr.setup import load_resources
    from steerlab.judges.heuristic import HeuristicJudge
    from steerlab.sae import Sae, SaeConfig

    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1, activation="relu"), seed=3)
    with pytest.raises(SteerlabError, match=r"^Detector id 48 is out of range: this SAE has latents 0 to 47\.$"):
        load_resources(EsrConfig(detectors=(3, 48)), model=model, sae=sae, judge=HeuristicJudge(), progress=False)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--rubric", "fancy"], "Unknown rubric 'fancy'; choose one of: faithful, today."),
        (["--detector-rule", "loose"], "Unknown detector rule 'loose'; choose one of: contrast, strict."),
        (["--detector-span", "prompt"], "Unknown detector span 'prompt'; choose one of: answer, all."),
        (["--detectors", "1,x"], "--detectors must hold non-negative integer latent ids; found 'x'."),
    ],
)
def test_cli_bad_esr_options_are_one_sentence(tmp_path, args, needle):
    import typer
    from typer.testing import CliRunner

    from steerlab.cli import esr_commands

    app = typer.Typer()
    esr_commands.register(app)
    result = CliRunner().invoke(app, ["esr", "run", str(tmp_path / "run"), *args])
    assert isinstance(result.exception, SteerlabError) and str(result.exception) == needle


def test_cli_unknown_preset_exits_2_with_one_sentence(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "steerlab", "esr", "run", str(tmp_path / "run"), "--preset", "fast"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        proc.returncode == 2 and proc.stderr.strip() == "error: Unknown preset 'fast'; choose one of: default, paper."
    ), proc.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


def test_cli_preset_paper_resolves_with_explicit_flags_winning(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from steerlab.cli import esr_commands

    seen = {}
    monkeypatch.setattr(esr_commands, "_run", lambda base, run_dir, conditions, **kw: seen.update(base))
    app = typer.Typer()
    esr_commands.register(app)
    result = CliRunner().invoke(
        app,
        [
            "esr",
            "run",
            str(tmp_path / "run"),
            "--preset",
            "paper",
            "--model",
            "meta-llama/Llama-3.3-70B-Instruct",
            "--max-new-tokens",
            "300",
            "--detectors",
            "7,9",
        ],
    )
    assert result.exit_code == 0, result.output
    cfg = EsrConfig(**seen)
    assert (
        cfg.max_new_tokens == 300
        and cfg.calib_max_new_tokens == 256
        and cfg.steer_layer == 33
        and cfg.detectors == (7, 9)
    )
    assert cfg.repetition_penalty == 1.2 and cfg.preset == "paper" and cfg.detector_rule == "strict"


# --- on a tiny model: a fixed detector set, the strict rule over all tokens, one grading loop -----------------


class RecordingJudge:
    """Splits nothing; scores 50; remembers every question it was shown."""

    judge_id = "test:recording"
    rubric_version = "r1"

    def __init__(self):
        self.seen = []

    def grade_many(self, items, progress=False):
        from steerlab.judges.types import Attempt, Grade

        self.seen += [it.prompt for it in items]
        return [
            Grade((Attempt(it.response or "x", 50.0),), judge_id=self.judge_id, rubric_version=self.rubric_version)
            for it in items
        ]

    def check(self):
        pass

    def config(self):
        return {"judge_id": self.judge_id}


@pytest.fixture()
def tiny_res(tiny_factory, tmp_path, monkeypatch):
    from steerlab.esr.setup import Resources
    from steerlab.sae import Sae, SaeConfig

    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1, activation="relu"), seed=3)
    prompts = [
        "How do you boil an egg?",
        "How do you fry an egg?",
        "Explain how to iron a shirt.",
        "Explain how to wash a car.",
    ]
    return Resources(model, sae, {}, None, RecordingJudge(), prompts, prompts[::-1])


def tiny(**kw):
    base = dict(
        latents=(3, 7),
        prompts_per_latent=2,
        max_new_tokens=5,
        calib_steps=1,
        calib_prompts=1,
        calib_upper=4.0,
        batch_size=8,
        conditions=("steered", "ablate"),
    )
    base.update(kw)
    return EsrConfig(**base)


def test_fixed_detectors_are_ablated_without_discovery(tiny_res, tmp_path):
    from steerlab.esr.runner import run_esr
    from steerlab.store import RunStore

    out = run_esr(tiny(detectors=(5, 11)), tmp_path / "run", res=tiny_res, progress=False)
    saved = json.loads((tmp_path / "run" / "detectors.json").read_text())
    assert saved["detectors"] == [5, 11] and saved["source"] == "given"
    assert not list((tmp_path / "cache").rglob("detectors-*.json"))  # no discovery ran
    with RunStore(tmp_path / "run", create=False) as store:
        assert store.config["detectors"] == [5, 11]
    assert out.report is not None and out.report.is_file()


def test_strict_rule_over_all_tokens_in_discovery(tiny_res):
    from steerlab.esr.detectors import discover

    found = discover(
        tiny_res,
        tiny(detector_rule="strict", detector_span="all", n_detectors=0, discovery_answers=1, discovery_derangements=1),
        progress=False,
    )
    assert found["rule"] == "strict" and found["span"] == "all" and found["detectors"] == found["strict_rule"]


def test_judge_run_and_esr_run_grade_the_same_question(tiny_res, tmp_path):
    from steerlab.esr.runner import run_esr
    from steerlab.judges.runner import grade_run
    from steerlab.store import RunStore

    run_esr(
        tiny(conditions=("meta:self_monitor",), judge_prompt="task"),
        tmp_path / "run",
        res=tiny_res,
        progress=False,
        report=False,
    )
    esr_seen = list(tiny_res.judge.seen)
    assert esr_seen and not any("force yourself" in q for q in esr_seen)  # the task, without the meta-prompt suffix
    other = RecordingJudge()
    other.judge_id = "test:other"
    with RunStore(tmp_path / "run", create=False) as store:
        grade_run(store, other)
        assert store.meta(f"judge:{other.judge_id}")[f"judge:{other.judge_id}"]["judge_prompt"] == "task"
    # `steerlab judge run` shows the judge the same questions the run's own grading did (after calibration's grades)
    assert other.seen and sorted(other.seen) == sorted(esr_seen[-len(other.seen) :])
