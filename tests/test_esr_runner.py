"""The ESR runner on a tiny random model: every stage, mixed batches, resumption, the report."""

import json

import pytest

from steerlab.esr.config import EsrConfig
from steerlab.esr.runner import generate_pending, run_esr
from steerlab.esr.setup import Resources
from steerlab.esr.trials import batch_interventions, build_trials
from steerlab.judges.base import BaseJudge
from steerlab.judges.restarts import split_attempts
from steerlab.judges.types import Attempt, Grade
from steerlab.sae import Sae, SaeConfig
from steerlab.store import RunStore

PROMPTS = [
    "How do you boil an egg?",
    "How do you fry an egg?",
    "Explain how to iron a shirt.",
    "Explain how to wash a car.",
]


class LengthJudge(BaseJudge):
    """Deterministic test judge: splits at restart phrases; an attempt scores by its byte sum mod 101."""

    judge_id = "test:length"
    rubric_version = "t1"

    def _grade(self, prompt, response, label):
        parts = split_attempts(response) or [response]
        return Grade(tuple(Attempt(p, float(sum(p.encode()) % 101)) for p in parts))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def res(tiny_factory):
    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1, activation="relu"), seed=3)
    freqs = [0.001 * (1 + i % 7) for i in range(48)]
    return Resources(
        model,
        sae,
        {i: f"'tok{i}'" for i in range(48)},
        freqs,
        LengthJudge(),
        PROMPTS,
        PROMPTS[::-1] + ["Explain how to sew."],
    )


def tiny_cfg(**kw):
    base = dict(
        latents=(3, 7),
        prompts_per_latent=2,
        max_new_tokens=6,
        calib_steps=2,
        calib_prompts=1,
        calib_upper=8.0,
        conditions=("steered", "baseline", "meta:self_monitor", "ablate", "random", "boost"),
        n_detectors=3,
        random_sets=2,
        detector_min_auc=0.5,
        detector_cut="fixed",
        boost_levels=(-1.0, 1.0),
        batch_size=5,
    )
    base.update(kw)
    return EsrConfig(**base)


def test_trials_pair_across_conditions():
    cfg = tiny_cfg()
    trials = build_trials(cfg, PROMPTS, {}, {3: 2.0, 7: 4.0}, detectors=[1, 2], random_sets=[[5, 6], [8, 9]])
    by_cond = {}
    for t in trials:
        by_cond.setdefault(t.condition, []).append((t.latent, t.extra["prompt_index"], t.seed))
    assert set(by_cond) == {
        "steered",
        "baseline",
        "meta:self_monitor",
        "ablate",
        "random:0",
        "random:1",
        "boost:-1",
        "boost:+1",
    }
    assert all(sorted(v) == sorted(by_cond["steered"]) for v in by_cond.values())
    assert len({t.key for t in trials}) == len(trials) == 8 * 4
    boosts = {t.strength for t in trials if t.condition == "boost:+1"}
    assert boosts == {4.0}  # mu 3 + sigma 1
    scaled = build_trials(tiny_cfg(conditions=("scale",), scale_levels=(0.5, 2.0)), PROMPTS, {}, {3: 2.0, 7: 4.0})
    assert sorted({(t.latent, t.strength) for t in scaled}) == [(3, 1.0), (3, 4.0), (7, 2.0), (7, 8.0)]


def test_mixed_batch_rows_equal_single_rows(res):
    """A steered row, a baseline row and an ablated row in one batch match each generated alone."""
    import steerlab
    from steerlab.store import Trial

    trials = [
        Trial("steered", PROMPTS[0], 11, 3, 6.0),
        Trial("baseline", PROMPTS[1], 12, 3, 0.0),
        Trial("ablate", PROMPTS[2], 13, 7, 6.0, extra={"ablate": [1, 2]}),
    ]
    ivs = batch_interventions(trials, res.sae, None, res.sae)
    together = steerlab.generate(
        res.model, [t.prompt for t in trials], ivs, max_new_tokens=6, temperature=0.6, seed=[t.seed for t in trials]
    )
    for i, t in enumerate(trials):
        alone = steerlab.generate(
            res.model,
            [t.prompt],
            batch_interventions([t], res.sae, None, res.sae),
            max_new_tokens=6,
            temperature=0.6,
            seed=[t.seed],
        )
        assert alone[0].token_ids == together[i].token_ids
    plain = steerlab.generate(res.model, [PROMPTS[1]], None, max_new_tokens=6, temperature=0.6, seed=[12])
    assert plain[0].token_ids == together[1].token_ids  # strength 0 = unsteered


def test_run_end_to_end_and_resume(res, tmp_path):

    cfg = tiny_cfg()
    run = tmp_path / "run"
    # a first pass stopped after one batch, as if killed
    out = run_esr(cfg, run, res=res, progress=False, max_batches=1, report=False)
    with RunStore(run, create=False) as store:
        assert store.counts()["generations"] == 5
        total = store.counts()["trials"]
    res2 = Resources(**{**res.__dict__})
    out = run_esr(cfg, run, res=res2, progress=False)
    with RunStore(run, create=False) as store:
        counts = store.counts()
        assert counts["trials"] == total == counts["generations"] == counts["grades"]
    s = out.summary
    assert set(s["metrics"]) >= {"steered", "baseline", "meta:self_monitor", "ablate", "random:0", "random:1"}
    for cond, m in s["metrics"].items():
        assert (
            0 <= m["multi_attempt_rate"]["value"] <= 1
            and m["multi_attempt_rate"]["lo"] <= m["multi_attempt_rate"]["value"]
        )
        assert m["first_score"]["n"] == s["n_trials"][cond]
    assert "ablate" in s["comparisons"] and s["comparisons"]["ablate"]["esr"]["n_pairs"] == 4
    assert set(s["comparisons"]["meta:self_monitor"]["increase_factor"]) == {"multi_attempt_rate", "esr_rate"}
    det = json.loads((run / "detectors.json").read_text())
    assert len(det["detectors"]) <= 3
    rnd = json.loads((run / "random_sets.json").read_text())
    assert all(not set(x) & set(det["detectors"]) for x in rnd["sets"])
    html = out.report.read_text()
    assert html.count("data:image/png;base64") >= 4 and "Summary" in html
    # a different config in the same run dir is refused
    from steerlab.errors import SteerlabError

    with pytest.raises(SteerlabError, match="different config"):
        run_esr(tiny_cfg(max_new_tokens=7), run, res=res, progress=False, report=False)


def test_latent_out_of_range(tiny_factory, tmp_path):
    from steerlab.errors import SteerlabError
    from steerlab.esr.setup import load_resources

    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1, activation="relu"))
    with pytest.raises(SteerlabError, match="Latent 99 is out of range"):
        load_resources(EsrConfig(latents=(3, 99)), model=model, sae=sae, judge=LengthJudge())


def test_traces_locate_the_restart(res, tmp_path):
    """A stored two-attempt episode: the restart phrase maps to its token, and the trace covers every response token."""
    from steerlab.esr.traces import char_to_token, collect_traces
    from steerlab.store import Trial

    text = "Boil water first. Wait, that's not right. Put the egg in cold water."
    ids = res.model.tokenizer(text, add_special_tokens=False)["input_ids"]
    rchar = text.index("Wait")
    rtok = char_to_token(res.model, ids, rchar)
    assert res.model.tokenizer.decode(ids[rtok:]).startswith("Wait")
    cfg = tiny_cfg()
    with RunStore(tmp_path / "r", {"x": 1}) as store:
        ep = Trial("steered", PROMPTS[0], 5, 3, 4.0, "lab", {"task": PROMPTS[0], "prompt_index": 0})
        base = Trial("baseline", PROMPTS[0], 5, 3, 0.0, "lab", {"task": PROMPTS[0], "prompt_index": 0})
        store.add_trials([ep, base])
        store.put_generation(ep.key, text, ids, "length")
        store.put_generation(
            base.key, "Boil water.", res.model.tokenizer("Boil water.", add_special_tokens=False)["input_ids"], "eos"
        )
        store.put_grades(
            [
                (ep.key, Grade((Attempt("a", 10.0), Attempt("b", 70.0)), judge_id="test:length", rubric_version="t1")),
                (base.key, Grade((Attempt("a", 90.0),), judge_id="test:length", rubric_version="t1")),
            ]
        )
        out = collect_traces(store, res, cfg, [1, 2, 5])
    (e,) = out["episodes"]
    assert e["restart_token"] == rtok and len(e["detector_sum"]) == len(ids) and e["scores"] == [10.0, 70.0]
    assert out["stats"]["n_episodes"] == 1 and out["stats"]["n_baseline"] == 1


def test_llm_concreteness_by_position_and_retry():
    from steerlab.errors import SteerlabError
    from steerlab.esr.selection import llm_concreteness, offline_concreteness

    replies = iter(["not json", '```json\n[{"index": 1, "rating": 20}, {"index": 0, "rating": 90}]\n```'])
    assert llm_concreteness(lambda s, u: next(replies), ["'volcano'", "'the'"]) == [90.0, 20.0]
    with pytest.raises(SteerlabError, match="no usable rating"):
        llm_concreteness(lambda s, u: '[{"index": 0, "rating": 50}]', ["a", "b"])
    assert offline_concreteness("'volcano' / 'lava' / 'magma'", 0.001) == 100.0
    assert offline_concreteness("'the' / 'and' / 'lava'", 0.001) == pytest.approx(100 / 3)
    assert offline_concreteness("'lava' (dense)", 0.2) == 0.0 and offline_concreteness("dead") == 0.0


def test_selection_drops_latents_that_fire_on_prompts(res):
    from steerlab.esr.selection import prompt_peaks, select_latents

    unlabeled = Resources(**{**res.__dict__, "labels": {}})
    peaks = prompt_peaks(unlabeled)
    out = select_latents(unlabeled, 3, seed=1)
    assert out["concreteness"].startswith("skipped")
    assert out["latents"] and all(float(peaks[i]) == 0 for i in out["latents"])
    assert len(out["latents"]) + out["rejected"]["fires_on_prompts"] == out["candidates"]
    # with labels, the offline rule rejects non-word labels ('tok3' is not a content word)
    labeled = select_latents(res, 3, seed=1)
    assert labeled["latents"] == [] and labeled["rejected"]["not_concrete"] == labeled["candidates"]


class PromptRecorder(LengthJudge):
    """Records the question each grade was asked about."""

    judge_id = "test:recorder"

    def __init__(self):
        super().__init__()
        self.seen = []

    def _grade(self, prompt, response, label):
        self.seen.append(prompt)
        return super()._grade(prompt, response, label)


@pytest.mark.parametrize("judge_prompt", ["task", "full"])
def test_meta_prompt_judge_sees_the_configured_question(res, tmp_path, judge_prompt):
    from steerlab.esr.runner import grade_pending

    cfg = tiny_cfg(conditions=("meta:self_monitor",), judge_prompt=judge_prompt)
    trials = build_trials(cfg, PROMPTS, res.labels, {3: 2.0, 7: 4.0})
    with RunStore(tmp_path / "run", {"esr": cfg.to_dict()}) as store:
        store.add_trials(trials)
        generate_pending(store, res, cfg)
        judge = PromptRecorder()
        grade_pending(store, judge)
    assert judge.seen and all(("force yourself" in q) == (judge_prompt == "full") for q in judge.seen)
    assert all(q.split(" If you notice")[0] in PROMPTS for q in judge.seen)


def test_vllm_trial_runner_uses_the_one_trial_batch_builder(tiny_factory):
    """The vLLM path hands its backend exactly the interventions the hf path builds (esr.trials.trial_interventions):
    steering at the steering layer, ablation at the run's ablation layer, in cfg.batch_size batches."""
    from steerlab.esr.config import EsrConfig
    from steerlab.esr.trials import trial_interventions
    from steerlab.esr.vllm_trials import VllmTrialRunner
    from steerlab.sae import Sae, SaeConfig
    from steerlab.store import Trial

    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1), seed=3)
    cfg = EsrConfig(steer_layer=0, ablation_layer="steering", batch_size=2, max_new_tokens=5)
    trials = [
        Trial("steered", "Boil an egg.", 1, 3, 2.0),
        Trial("ablate", "Fry an egg.", 2, 7, 4.0, extra={"ablate": [1, 2]}),
        Trial("baseline", "Wash a car.", 3, 5, 0.0),
    ]
    seen = []

    class RecordingBackend:
        def generate(self, prompts, ivs, **kw):
            seen.append((ivs, kw))
            return [([1, 2], "text", "stop")] * len(prompts)

    runner = VllmTrialRunner(cfg, model, sae)
    runner._backend = RecordingBackend()
    rows = runner(trials)
    assert [r[0] for r in rows] == [t.key for t in trials] and rows[0][4] == {"finish": "stop", "backend": "vllm"}
    expected = [trial_interventions(cfg, sae, trials[:2]), trial_interventions(cfg, sae, trials[2:])]
    assert [[iv.fingerprint() for iv in ivs] for ivs, _ in seen] == [[iv.fingerprint() for iv in e] for e in expected]
    clamp = seen[0][0][1]
    assert clamp.sae.layer == 0 and seen[0][0][0].layer == 0  # ablation moved to the steering layer, as configured
    assert [kw["seeds"] for _, kw in seen] == [[1, 2], [3]] and seen[0][1]["max_new_tokens"] == 5


def test_run_folder_thresholds_are_reused_only_under_the_same_calibration(res, tmp_path):
    """calibration.json carries its key: reused when it matches, refused once trials ran, redone before that."""
    from steerlab.errors import SteerlabError
    from steerlab.esr.runner import resolve_thresholds

    cfg = tiny_cfg()
    run = tmp_path / "run"
    run.mkdir()
    resolve_thresholds(res, cfg, [3, 7], run)
    path = run / "calibration.json"
    saved = json.loads(path.read_text())
    assert saved["key"]["judge"] == "test:length" and saved["key"]["rubric"] == "t1"
    saved["thresholds"]["3"]["threshold"] = 123.0  # a marker: only the folder's file holds this value
    path.write_text(json.dumps(saved))
    assert resolve_thresholds(res, cfg, [3, 7], run)[3].threshold == 123.0

    class NewRubric(LengthJudge):
        rubric_version = "t2"

    res2 = Resources(**{**res.__dict__, "judge": NewRubric()})
    (run / "run.sqlite").write_bytes(b"")  # trials already ran here, at the old thresholds
    with pytest.raises(
        SteerlabError, match=r"calibrated with a different config \(calibration inputs changed: rubric\)"
    ):
        resolve_thresholds(res2, cfg, [3, 7], run)
    (run / "run.sqlite").unlink()  # no trials yet: the folder is recalibrated under the new key
    fresh = resolve_thresholds(res2, cfg, [3, 7], run)
    assert fresh[3].threshold != 123.0 and json.loads(path.read_text())["key"]["rubric"] == "t2"

    legacy = json.loads(path.read_text())  # a file written before keys were saved: judged by its settings
    del legacy["key"]
    legacy["thresholds"]["3"]["threshold"] = 77.0
    path.write_text(json.dumps(legacy))
    assert resolve_thresholds(res2, cfg, [3, 7], run)[3].threshold == 77.0
    legacy["settings"]["steps"] = legacy["settings"]["steps"] + 1
    path.write_text(json.dumps(legacy))
    assert resolve_thresholds(res2, cfg, [3, 7], run)[3].threshold != 77.0
