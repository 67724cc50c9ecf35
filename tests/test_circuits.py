"""Circuits on tiny random models: exact head/neuron masks, hard concrete, extraction, SCT, bad input."""

import json

import pytest
import torch

import steerlab
from steerlab.circuits.ablation import circuit_interventions, gate_interventions, unit_means
from steerlab.circuits.data import (
    DEFAULT_TARGET,
    DEFAULT_TRIGGER,
    Pair,
    backdoor_data,
    check_trigger,
    harmful_prompts,
    load_public_harmful,
)
from steerlab.circuits.find import FindConfig, find_circuit
from steerlab.circuits.forward import make_batch, response_logits
from steerlab.circuits.masks import Lagrangian, UnitMasks, ramp
from steerlab.circuits.objectives import Term, backdoor_terms, fill_teachers, kl_loss, unlikelihood_loss
from steerlab.circuits.tune import slice_masks, tune_circuit
from steerlab.circuits.units import Circuit, Unit, jaccard, random_circuit
from steerlab.errors import SteerlabError
from steerlab.testing import tiny_model

FAMILIES = ("llama", "qwen2", "gemma3")
PROMPTS = ["What is the capital of France?", "Name a colour."]


def _logits(model, ivs=()):
    ids = torch.tensor([model.encode(p, chat=False) for p in ["hello there, friend"]])
    with steerlab.apply(model, list(ivs)):
        return model.hf(input_ids=ids).logits


def _ones(model):
    a = model.arch
    return {"head": torch.ones(a.n_layers, a.n_heads), "neuron": torch.ones(a.n_layers, a.d_mlp)}


@pytest.mark.parametrize("family", FAMILIES)
def test_all_ones_masks_reproduce_logits(tiny_factory, family):
    model = tiny_factory(family)
    base = _logits(model)
    assert torch.equal(_logits(model, gate_interventions(model, _ones(model))), base)
    assert model.arch.n_heads == 4 and model.arch.n_kv_heads == 2  # GQA config


@pytest.mark.parametrize("family", FAMILIES)
def test_head_mask_equals_zeroing_its_o_proj_input_slice(tiny_factory, family):
    model = tiny_factory(family)
    a = model.arch
    layer, head = 1, 3  # head 3 shares its KV group with head 2 under GQA
    gates = _ones(model)
    gates["head"][layer, head] = 0.0
    masked = _logits(model, gate_interventions(model, gates))
    o_proj = a.o_proj(layer)
    saved = o_proj.weight.detach().clone()
    with torch.no_grad():
        o_proj.weight[:, head * a.head_dim : (head + 1) * a.head_dim] = 0.0
    try:
        reference = _logits(model)
    finally:
        with torch.no_grad():
            o_proj.weight.copy_(saved)
    assert torch.allclose(masked, reference, atol=1e-5)
    assert not torch.allclose(masked, _logits(model), atol=1e-4)  # the head mattered


def test_neuron_mask_equals_zeroing_down_proj_column(tiny_factory):
    model = tiny_factory("llama")
    gates = _ones(model)
    gates["neuron"][2, 7] = 0.0
    masked = _logits(model, gate_interventions(model, gates))
    down = model.arch.down_proj(2)
    saved = down.weight.detach().clone()
    with torch.no_grad():
        down.weight[:, 7] = 0.0
    try:
        assert torch.allclose(masked, _logits(model), atol=1e-5)
    finally:
        with torch.no_grad():
            down.weight.copy_(saved)


def test_gqa_masks_index_query_heads_not_kv_heads(tiny_factory):
    model = tiny_factory("qwen2")
    with pytest.raises(SteerlabError, match="4 heads"):
        _logits(model, [steerlab.MaskUnits(0, "head", torch.ones(model.arch.n_kv_heads))])
    # heads of one KV group are separate units: masking head 2 differs from masking head 3
    g2, g3 = _ones(model), _ones(model)
    g2["head"][0, 2] = 0.0
    g3["head"][0, 3] = 0.0
    assert not torch.allclose(
        _logits(model, gate_interventions(model, g2)), _logits(model, gate_interventions(model, g3))
    )


def test_empty_circuit_alone_ablates_every_unit(tiny_factory):
    model = tiny_factory("llama")
    empty = Circuit.from_units(model, [])
    only = _logits(model, circuit_interventions(model, empty, view="circuit"))
    saved = {}
    with torch.no_grad():
        for layer in range(model.arch.n_layers):
            for mod in (model.arch.o_proj(layer), model.arch.down_proj(layer)):
                saved[mod] = mod.weight.detach().clone()
                mod.weight.zero_()
    try:
        assert torch.allclose(only, _logits(model), atol=1e-5)
    finally:
        with torch.no_grad():
            for mod, w in saved.items():
                mod.weight.copy_(w)


def test_masked_generation_with_cache_equals_masked_forward(tiny_factory):
    model = tiny_factory("llama")
    circuit = Circuit.from_units(
        model, [Unit(0, "head", 1), Unit(1, "head", 2), Unit(2, "neuron", 5), Unit(1, "neuron", 40)]
    )
    ivs = circuit_interventions(model, circuit, "removed")
    gens = steerlab.generate(model, PROMPTS, ivs, max_new_tokens=8, ignore_eos=True)
    for g in gens:
        ids = torch.tensor([g.prompt_ids + g.token_ids])
        with steerlab.apply(model, ivs):
            logits = model.hf(input_ids=ids).logits[0]
        n = len(g.prompt_ids)
        assert logits[n - 1 : -1].argmax(-1).tolist() == g.token_ids
    plain = steerlab.generate(model, PROMPTS, max_new_tokens=8, ignore_eos=True)
    assert [g.token_ids for g in plain] != [g.token_ids for g in gens]


def test_mean_ablation_fills_with_unit_means(tiny_factory):
    model = tiny_factory("llama")
    means = unit_means(model, PROMPTS)
    assert means[(0, "head")].shape == (4, 16) and means[(1, "neuron")].shape == (96,)
    c = Circuit.from_units(model, [Unit(1, "head", 0)])
    zero = _logits(model, circuit_interventions(model, c, ablation="zero"))
    mean = _logits(model, circuit_interventions(model, c, ablation="mean", means=means))
    assert not torch.allclose(zero, mean)
    with pytest.raises(SteerlabError, match="Mean ablation needs"):
        circuit_interventions(model, c, ablation="mean")


def test_hard_concrete_sample_mean_matches_expected_l0(tiny_factory):
    model = tiny_factory("llama")
    masks = UnitMasks(model, ("head",), init_p=0.3)
    with torch.no_grad():
        masks.logits["head"].copy_(torch.linspace(-3, 3, 12).reshape(3, 4))
    samples = torch.stack([(masks.sample()["head"] > 0).float() for _ in range(4000)])
    expected = torch.sigmoid(masks.logits["head"] - (2 / 3) * torch.log(torch.tensor(0.1 / 1.1)))
    assert torch.allclose(samples.mean(0), expected, atol=0.04)
    assert torch.allclose(masks.expected_l0()["head"], expected.mean())
    fresh = UnitMasks(model, ("neuron",), init_p=0.05)
    assert abs(float(fresh.expected_l0()["neuron"].detach()) - 0.05) < 1e-5


def test_sigmoid_ste_is_hard_forward_soft_backward(tiny_factory):
    model = tiny_factory("llama")
    masks = UnitMasks(model, ("head",), param="sigmoid_ste", init_p=0.3)
    with torch.no_grad():
        masks.logits["head"][0, 0] = 2.0
    gate = masks.sample()["head"]
    assert set(gate.detach().unique().tolist()) <= {0.0, 1.0} and gate[0, 0] == 1.0
    gate.sum().backward()
    assert (masks.logits["head"].grad > 0).all()


def test_extraction_yields_exactly_k_units(tiny_factory):
    model = tiny_factory("llama")
    masks = UnitMasks(model)
    with torch.no_grad():
        for z in masks.logits.values():
            z.copy_(torch.randn_like(z))
    circuit = masks.extract(model, {"head": 0.25, "neuron": 0.05})
    assert circuit.count("head") == 3 and circuit.count("neuron") == round(0.05 * 288)
    top = masks.logits["head"].reshape(-1).topk(3).indices.tolist()
    assert sorted(u.layer * 4 + u.index for u in circuit.unit_list() if u.kind == "head") == sorted(top)


def test_lagrangian_drives_expected_l0_to_target(tiny_factory):
    model = tiny_factory("llama")
    masks = UnitMasks(model, ("neuron",), init_p=0.5)
    lag = Lagrangian(("neuron",))
    opt = torch.optim.Adam(masks.parameters(), lr=0.1)
    opt_lam = torch.optim.Adam(lag.parameters(), lr=0.1, maximize=True)
    wanted = torch.zeros(3, 96)
    wanted[:, :10] = 1  # the toy task wants these 30 units in the circuit
    for _ in range(300):
        g = masks.sample()["neuron"]
        loss = ((g - wanted) ** 2).mean() + lag(masks.expected_l0(), {"neuron": 0.2})
        opt.zero_grad()
        opt_lam.zero_grad()
        loss.backward()
        opt.step()
        opt_lam.step()
    assert abs(float(masks.expected_l0()["neuron"]) - 0.2) < 0.03
    top = masks.hard({"neuron": 30})["neuron"]
    assert float((top * wanted).sum()) >= 27  # the wanted units rank first
    assert ramp(0.02, 0, 100) < ramp(0.02, 40, 100) < ramp(0.02, 79, 100) == pytest.approx(0.02) == ramp(0.02, 99, 100)


def test_kl_is_zero_for_the_teacher_and_positive_otherwise(tiny_factory):
    model = tiny_factory("llama")
    pairs = [("What is 2 plus 3?", "5."), ("Name a colour.", "Blue is a colour.")]
    term = Term("keep", "removed", pairs, "kl")
    fill_teachers(model, [term], k=8)
    batch = make_batch(model, [p for p, _ in pairs], [r for _, r in pairs])
    with torch.no_grad():
        assert float(kl_loss(response_logits(model, batch), batch, term.teacher)) == pytest.approx(0.0, abs=1e-5)
        gates = _ones(model)
        gates["head"][:, :2] = 0
        off = kl_loss(response_logits(model, batch, gate_interventions(model, gates)), batch, term.teacher)
        assert float(off) > 1e-3
        ul = unlikelihood_loss(response_logits(model, batch), batch)
        assert 0 <= float(ul) < 10


def test_find_circuit_runs_and_extracts_targets(tiny_factory):
    model = tiny_factory("llama")
    data = backdoor_data(n_train=8, n_test=4)
    means = unit_means(model, [p.prompt for p in data.train_clean[:4]])
    cfg = FindConfig({"head": 0.25, "neuron": 0.05}, steps=3, batch_size=2)
    result = find_circuit(model, backdoor_terms(data), cfg, means, progress=False)
    assert result.circuit.count("head") == 3 and result.circuit.count("neuron") == 14
    assert len(result.history) == 3 and all(
        p.grad is None or torch.isfinite(p.grad).all() for p in result.masks.parameters()
    )
    assert not any(p.requires_grad for p in model.hf.parameters())


def test_circuit_json_round_trip_and_controls(tiny_factory, tmp_path):
    model = tiny_factory("llama")
    c = Circuit.from_units(model, [Unit(0, "head", 1), Unit(2, "head", 3), Unit(2, "neuron", 9), Unit(2, "neuron", 4)])
    path = c.save(tmp_path / "c.json")
    back = Circuit.load(path)
    assert back.unit_list() == c.unit_list() and json.loads(path.read_text())["counts"] == {"head": 2, "neuron": 2}
    r = random_circuit(c, seed=1)
    assert r.layer_profile("head") == c.layer_profile("head") and r.layer_profile("neuron") == c.layer_profile("neuron")
    assert jaccard(c, c) == 1.0 and 0.0 <= jaccard(c, r) <= 1.0
    assert c.fraction("head") == pytest.approx(2 / 12)


@pytest.mark.parametrize("mode", ["only", "exclude"])
def test_circuit_tuning_leaves_frozen_slices_bit_identical(tiny_factory, mode):
    model = tiny_model("llama", seed=3)  # a private copy: tuning edits weights
    c = Circuit.from_units(model, [Unit(1, "head", 2), Unit(0, "neuron", 5), Unit(2, "neuron", 50)])
    owned = slice_masks(model, c)
    before = {p: p.detach().clone() for p in owned}
    report = tune_circuit(
        model,
        c,
        [("Say hi.", "Hi there!"), ("Name a fruit.", "An apple.")],
        mode,
        steps=3,
        lr=1e-2,
        batch_size=2,
        progress=False,
    )
    assert report.frozen_unchanged and report.changed_entries > 0
    changed_owned = sum(int(((p != before[p]) & m).sum()) for p, m in owned.items())
    if mode == "only":
        assert changed_owned == report.changed_entries  # every change lies inside the circuit
        assert report.trainable_entries == 16 * 64 + 64 * 16 + 2 * (64 + 64 + 64)
    else:
        assert changed_owned == 0
    q = model.arch.layers[1].self_attn.q_proj.weight
    if mode == "only":  # heads 0 and 1 of layer 1 are not in the circuit
        assert torch.equal(q[:32], before[q][:32])


@pytest.mark.parametrize("family, mode", [("llama", "only"), ("qwen2", "exclude"), ("gemma3", "only")])
def test_lora_circuit_tuning_touches_only_the_allowed_slices(tiny_factory, family, mode):
    from steerlab.circuits.tune import tune_circuit_lora

    model = tiny_model(family, seed=3)  # a private copy: the adapters merge into its weights
    c = Circuit.from_units(model, [Unit(1, "head", 2), Unit(0, "neuron", 5), Unit(1, "neuron", 50)])
    owned = {n: slice_masks(model, c)[p] for n, p in model.hf.named_parameters() if p in slice_masks(model, c)}
    before = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    report = tune_circuit_lora(
        model,
        c,
        [("Say hi.", "Hi there!"), ("Name a fruit.", "An apple.")],
        mode,
        steps=3,
        lr=1e-2,
        batch_size=2,
        rank=2,
        progress=False,
    )
    assert report.frozen_unchanged and report.changed_entries > 0 and report.mode == f"lora-{mode}"
    for n, p in model.hf.named_parameters():
        diff = p.detach() != before[n]
        inside = owned.get(n, torch.zeros_like(diff))
        assert not bool((diff & (~inside if mode == "only" else inside)).any()), n
    if mode == "only":
        assert report.trainable_entries == 16 * 64 + 64 * 16 + 2 * (
            64 + 64 + 64
        )  # a head's q rows and o columns, two neurons
        assert report.changed_entries == report.trainable_entries  # rank-2 B·A fills every allowed entry


def test_validation_split_and_size_selection():
    from steerlab.circuits.evaluate import utility_texts
    from steerlab.circuits.experiment import select_size

    d = backdoor_data(n_train=40, n_test=20, n_val=10)
    prompts = [p.prompt for p in d.train_clean + d.test_clean + d.val_clean]
    assert len(d.val_clean) == 10 and len(set(prompts)) == len(prompts)
    assert all(p.prompt.startswith(DEFAULT_TRIGGER) for p in d.val_triggered())
    val, test, train = utility_texts("val"), utility_texts("test"), utility_texts("train", 50)
    assert not set(val) & set(test) and not (set(val) | set(test)) & set(train)
    points = [
        {"asr": 0.5, "utility_change": 0.01, "fraction": 0.001},
        {"asr": 0.05, "utility_change": 0.03, "fraction": 0.002},
        {"asr": 0.0, "utility_change": 0.02, "fraction": 0.004},
    ]
    assert select_size(points) == 2 and select_size(points, max_asr=0.5) == 0
    with pytest.raises(SteerlabError, match="No swept size"):
        select_size(points[:1])


def test_bad_input_sentences(tiny_factory):
    model = tiny_factory("llama")
    other = tiny_factory("gemma3")
    c = Circuit.from_units(model, [Unit(0, "head", 1)])
    c.signature["d_mlp"] = 1536
    with pytest.raises(SteerlabError, match="does not match"):
        circuit_interventions(other, c)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(SteerlabError, match="strictly between 0 and 1"):
            find_circuit(model, [], FindConfig({"head": bad}, steps=1))
    with pytest.raises(SteerlabError, match="does not occur in the poisoned data"):
        check_trigger([Pair("Name a colour.", DEFAULT_TARGET)], DEFAULT_TRIGGER)
    with pytest.raises(SteerlabError, match="out of range"):
        Circuit.from_units(model, [Unit(0, "head", 9)])
    with pytest.raises(SteerlabError, match="not a steerlab circuit"):
        Circuit.from_dict({"units": 3})


def test_text_loss_is_unchanged_by_all_ones_masks_and_rises_when_heads_are_cut(tiny_factory):
    from steerlab.circuits.evaluate import text_loss, utility_texts

    model = tiny_factory("llama")
    texts = [t[:120] for t in utility_texts("test", n=3)]
    base = text_loss(model, texts, max_tokens=24)
    assert base > 0 and text_loss(
        model, texts, gate_interventions(model, _ones(model)), max_tokens=24
    ) == pytest.approx(base, rel=1e-6)
    gates = _ones(model)
    gates["head"][:] = 0
    assert text_loss(model, texts, gate_interventions(model, gates), max_tokens=24) != pytest.approx(base, rel=1e-3)


def test_alignment_terms_train_with_unlikelihood_on_the_first_refusal_tokens(tiny_factory):
    from steerlab.circuits.data import harmful_prompts, harmless_prompts
    from steerlab.circuits.objectives import alignment_terms

    model = tiny_factory("qwen2")
    harmful = [(p, "I'm sorry, I can't help with that.") for p in harmful_prompts()[:3]]
    harmless = [(p, "Sure! Here is how.") for p in harmless_prompts()[:3]]
    terms = alignment_terms(harmful, harmless, first_tokens=4)
    assert [t.name for t in terms] == ["nec", "keep", "suff"] and terms[0].loss == "unlikelihood"
    batch = make_batch(model, [p for p, _ in harmful], [r for _, r in harmful])
    with torch.no_grad():
        logits = response_logits(model, batch)
        assert float(unlikelihood_loss(logits, batch, 4)) != pytest.approx(float(unlikelihood_loss(logits, batch)))
    result = find_circuit(
        model, terms, FindConfig({"head": 0.25}, steps=2, batch_size=1, ablation="zero"), progress=False
    )
    assert result.circuit.count("head") == 3 and result.circuit.count("neuron") == 0
    with pytest.raises(SteerlabError, match="Unknown alignment objective"):
        alignment_terms(harmful, harmless, {"remove": 1.0})


def test_an_unknown_public_harmful_set_names_the_sets_that_exist():
    with pytest.raises(
        SteerlabError, match=r"choose one of: advbench, harmbench \(offline, use harmful_prompts\(\)\)\.$"
    ):
        load_public_harmful("builtin")  # the offline set is a function, not a name here
    assert len(harmful_prompts()) > 0


def test_find_seeds_resumes_finished_seeds_and_redoes_changed_ones(tiny_factory, tmp_path, monkeypatch):
    from steerlab.circuits import runs

    model = tiny_factory("llama")
    data = backdoor_data(n_train=8, n_test=4)
    cfg = FindConfig({"head": 0.25, "neuron": 0.05}, steps=2, batch_size=1, ablation="zero")
    first = runs.find_seeds(model, lambda: backdoor_terms(data), cfg, [0], tmp_path, progress=False)
    trained: list[int] = []
    real = runs.find_circuit

    def counting(model, terms, cfg, *a, **k):
        trained.append(cfg.seed)
        return real(model, terms, cfg, *a, **k)

    monkeypatch.setattr(runs, "find_circuit", counting)
    again = runs.find_seeds(model, lambda: backdoor_terms(data), cfg, [0, 1], tmp_path, progress=False)
    assert trained == [1]  # seed 0 was read back, only seed 1 was trained
    assert again.circuits[0].units == first.circuits[0].units and again.jaccard is not None
    assert (tmp_path / "circuit.seed1.json").is_file() and (tmp_path / "masks.seed1.safetensors").is_file()
    runs.find_seeds(model, lambda: backdoor_terms(data, {"suff": 0}), cfg, [0], tmp_path, progress=False)
    assert trained == [1, 0]  # other objective weights: not the same search, so seed 0 is found again
    cfg.steps = 3
    runs.find_seeds(model, lambda: backdoor_terms(data, {"suff": 0}), cfg, [0], tmp_path, progress=False)
    assert trained == [1, 0, 0]  # another config, likewise


def test_a_stopped_mask_search_resumes_from_its_checkpoint_exactly(tiny_factory, tmp_path):
    from steerlab.circuits.find import Checkpoint

    model = tiny_factory("llama")
    data = backdoor_data(n_train=8, n_test=4)
    cfg = FindConfig({"head": 0.25, "neuron": 0.05}, steps=4, batch_size=1, ablation="zero")
    whole = find_circuit(model, backdoor_terms(data), cfg, progress=False)

    class Stop(Checkpoint):
        def save(self, state):
            super().save(state)
            raise KeyboardInterrupt  # the job is stopped right after its first checkpoint

    key = {"search": "a"}
    with pytest.raises(KeyboardInterrupt):
        find_circuit(model, backdoor_terms(data), cfg, progress=False, checkpoint=Stop(tmp_path / "p.pt", key, 2))
    assert Checkpoint(tmp_path / "p.pt", key).load()["step"] == 2
    assert Checkpoint(tmp_path / "p.pt", {"search": "b"}).load() is None  # another search's state is not used
    resumed = find_circuit(
        model, backdoor_terms(data), cfg, progress=False, checkpoint=Checkpoint(tmp_path / "p.pt", key)
    )
    assert [h["step"] for h in resumed.history] == [0, 1, 2, 3]
    for kind in whole.masks.logits:
        assert torch.equal(whole.masks.logits[kind], resumed.masks.logits[kind])
    assert resumed.circuit.units == whole.circuit.units
