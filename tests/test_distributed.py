"""The Ray runner on a local 2-CPU cluster: same trials and seeds give the same results as one process,
and a worker killed mid-run loses nothing and duplicates nothing."""

import pytest

from steerlab.distributed import ObjectLoader, RayOptions, plan_batches
from steerlab.distributed.ray_runner import actor_plan
from steerlab.esr.config import EsrConfig
from steerlab.esr.runner import generate_pending
from steerlab.esr.trials import build_trials
from steerlab.sae import Sae, SaeConfig
from steerlab.store import RunStore, Trial

PROMPTS = [
    "How do you boil an egg?",
    "How do you fry an egg?",
    "Explain how to iron a shirt.",
    "Explain how to wash a car.",
]


def test_plan_batches_cuts_in_order():
    trials = [Trial("steered", f"p{i}", i) for i in range(7)]
    assert [[t.seed for t in b] for b in plan_batches(trials, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(plan_batches(trials, 3, max_batches=2)) == 2


def test_actor_plan_is_gpu_aware():
    assert actor_plan({"CPU": 16.0, "GPU": 4.0}, RayOptions()) == (4, {"num_gpus": 1, "num_cpus": 1})
    assert actor_plan({"CPU": 16.0, "GPU": 4.0}, RayOptions(workers=2)) == (2, {"num_gpus": 1, "num_cpus": 1})
    assert actor_plan({"CPU": 16.0, "GPU": 8.0}, RayOptions(gpus_per_worker=4)) == (2, {"num_gpus": 4, "num_cpus": 1})
    assert actor_plan({"CPU": 8.0}, RayOptions(threads=2)) == (4, {"num_cpus": 2})


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    import builtins

    import steerlab.distributed.ray_runner as rr
    from steerlab.errors import SteerlabError

    real = builtins.__import__
    monkeypatch.setattr(
        builtins,
        "__import__",
        lambda name, *a, **k: (_ for _ in ()).throw(ImportError()) if name == "ray" else real(name, *a, **k),
    )
    with pytest.raises(SteerlabError, match=r"pip install 'steerlab\[ray\]'"):
        rr.require_ray()


# --- on a real local Ray cluster -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")  # the `ray` extra; without it only the tests above run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tiny_factory):
    model = tiny_factory("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1, activation="relu"), seed=3)
    cfg = EsrConfig(
        latents=(3, 7, 11),
        prompts_per_latent=2,
        max_new_tokens=6,
        temperature=0.6,
        batch_size=3,
        conditions=("steered", "baseline", "ablate"),
    )
    trials = build_trials(cfg, PROMPTS, {}, {3: 2.0, 7: 4.0, 11: 3.0}, detectors=[1, 2], random_sets=[])
    return model, sae, cfg, trials


def _store(tmp_path, name, trials):
    store = RunStore(tmp_path / name, {"test": 1})
    store.add_trials(trials)
    return store


def _results(store):
    return {
        r["trial_key"]: (r["text"], r["token_ids"], r["finish_reason"])
        for r in store._read("SELECT * FROM generations")
    }


@pytest.fixture(scope="module")
def single_process(setup, tmp_path_factory):
    model, sae, cfg, trials = setup
    store = _store(tmp_path_factory.mktemp("single"), "run", trials)
    from steerlab.esr.setup import Resources

    res = Resources(model, sae, {}, None, None, PROMPTS, PROMPTS)
    assert generate_pending(store, res, cfg) == len(trials)
    yield _results(store)
    store.close()


def _pid_once_back(worker, timeout=60.0):
    import time

    import ray
    from ray.exceptions import ActorUnavailableError

    end = time.time() + timeout
    while True:
        try:
            return ray.get(worker.pid.remote())
        except ActorUnavailableError:
            if time.time() > end:
                raise
            time.sleep(0.5)


def _generation_counts(store):
    return store._read("SELECT trial_key, COUNT(*) AS n FROM generations GROUP BY trial_key")


def test_ray_run_equals_single_process(cluster, setup, single_process, tmp_path):
    model, sae, cfg, trials = setup
    store = _store(tmp_path, "ray", trials)
    written = generate_pending(store, None, cfg, ray_address="local", ray_workers=2, loader=ObjectLoader(model, sae))
    assert written == len(trials) == 18
    assert store.pending() == []
    assert _results(store) == single_process
    store.close()


@pytest.mark.parametrize("restart", [False, True], ids=["retired", "restarted"])
def test_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, setup, single_process, tmp_path, restart):
    from steerlab.distributed.ray_runner import run_items, start_workers
    from steerlab.esr.batches import TrialBatchWork

    ray = cluster
    model, sae, cfg, trials = setup
    store = _store(tmp_path, "killed", trials)
    batches = plan_batches(store.pending(), cfg.batch_size)
    workers = start_workers(ObjectLoader(model, sae), TrialBatchWork(cfg), RayOptions(workers=2, max_restarts=1))
    pids = ray.get([w.pid.remote() for w in workers])
    stored: list[int] = []
    written = 0

    def store_and_kill_second_worker_once(batch, rows):
        nonlocal written
        written += store.put_generations(rows)
        if not stored:  # first batch back: worker 1 is busy with (or about to get) another batch
            ray.kill(workers[1], no_restart=not restart)
        stored.append(batch)

    try:
        done = run_items(batches, workers, store_and_kill_second_worker_once, max_restarts=1)
        assert done == len(batches)
        if restart:
            assert _pid_once_back(workers[1]) != pids[1]  # Ray brought the actor back in a new process
    finally:
        for w in workers:
            ray.kill(w)
    assert sorted(stored) == list(range(len(batches)))  # every batch stored exactly once
    assert written == len(trials)
    assert {r["n"] for r in _generation_counts(store)} == {1} and len(_generation_counts(store)) == len(trials)
    assert _results(store) == single_process  # re-queued batches give the same tokens
    store.close()


@pytest.mark.parametrize("command", ["run", "baseline", "meta", "ablate", "random-control", "sweep"])
@pytest.mark.parametrize("args, address", [(["--ray", "local"], "local"), (["--ray", "auto"], "auto"), ([], None)])
def test_cli_threads_ray_and_backend_options(monkeypatch, tmp_path, args, address, command):
    """Every experiment command that runs trials takes --ray, --ray-workers and --backend."""
    import steerlab.esr
    from steerlab.cli.main import _register, app

    _register()
    seen = {}

    def fake_run_esr(cfg, run_dir, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(steerlab.esr, "run_esr", fake_run_esr)
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        app, ["esr", command, str(tmp_path / "run"), *args, "--ray-workers", "2", "--latents", "1"]
    )
    assert result.exit_code == 0, result.output
    assert seen == {"ray_address": address, "ray_workers": 2, "backend": "hf"}


def test_the_pool_runs_any_work_function(cluster):
    """The pool knows no experiment: a plain function over plain items, each result passed on once."""
    from steerlab.distributed import run_pool

    scaled = lambda context, item: context[0] * item  # noqa: E731  (a lambda travels by value to the actors)
    got: dict[int, int] = {}
    done = run_pool(list(range(7)), scaled, ObjectLoader(10), got.__setitem__, RayOptions(workers=2))
    assert done == 7 and got == {i: 10 * i for i in range(7)}
