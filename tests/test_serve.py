"""The OpenAI-compatible server on a tiny model (loopback only): protocol, batching, steering, auth."""

import threading

import pytest
import torch

import steerlab
from serve_helpers import call
from steerlab.serve import start_server

PROMPT = "How do you fold a sheet?"


@pytest.fixture(scope="module")
def tiny():
    from steerlab.testing.tiny import tiny_model

    return tiny_model("llama")


@pytest.fixture(scope="module")
def server(tiny):
    with start_server(tiny, max_batch=8, batch_wait_s=0.2, api_key="local-test-key") as srv:
        yield srv


AUTH = {"Authorization": "Bearer local-test-key"}


def chat(srv, extra=None, **body):
    payload = {
        "model": srv.config.model_id,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 12,
        "temperature": 0,
        **body,
    }
    if extra is not None:
        payload["steerlab"] = extra
    return call(f"{srv.url}/chat/completions", payload, AUTH)


def direct(model, prompt=PROMPT, interventions=None, chat_mode=True, n=12):
    return steerlab.generate(model, [prompt], interventions, max_new_tokens=n, temperature=0, chat=chat_mode)[0].text


def test_models_endpoint(server):
    status, body = call(f"{server.url}/models", headers=AUTH)
    assert status == 200 and body["data"][0]["id"] == "tiny-llama" and body["object"] == "list"


def test_chat_completion_matches_direct_generate(server, tiny):
    status, body = chat(server)
    assert status == 200 and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == direct(tiny)
    assert choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 12 and body["usage"]["prompt_tokens"] > 0


def test_text_completion_matches_direct_generate(server, tiny):
    status, body = call(f"{server.url}/completions", {"prompt": "Once upon", "max_tokens": 8, "temperature": 0}, AUTH)
    assert status == 200 and body["choices"][0]["text"] == direct(tiny, "Once upon", chat_mode=False, n=8)


def test_stream_sends_server_sent_events(server, tiny):
    status, raw = chat(server, stream=True)
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert status == 200 and events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks) and len(chunks) > 2
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == direct(tiny)


def test_auth_required(server):
    assert call(f"{server.url}/models")[0] == 401
    status, body = call(f"{server.url}/chat/completions", {"messages": []}, {"Authorization": "Bearer wrong"})
    assert status == 401 and body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "body,status,needle",
    [
        (b"{not json", 400, "not valid JSON"),
        ({"messages": []}, 400, "'messages'"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}', 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "top_p": Infinity}', 400, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 3}, 400, "'n'"),
        ({"messages": [{"role": "user", "content": "x"}], "model": "gpt-7"}, 404, "serves 'tiny-llama' only"),
        (
            {"messages": [{"role": "user", "content": "x"}], "steerlab": {"interventions": [{"type": "Nope"}]}},
            400,
            "Unknown intervention type",
        ),
    ],
)
def test_bad_requests_get_clear_errors(server, body, status, needle):
    got, reply = call(f"{server.url}/chat/completions", body, AUTH)
    assert got == status and needle in reply["error"]["message"]


def test_per_request_steering_changes_output_and_bad_layer_is_rejected(server, tiny):
    vec = torch.randn(64, generator=torch.Generator().manual_seed(1))
    add = steerlab.AddVector(1, vec, 40.0)
    _, steered = chat(server, {"interventions": [add.to_dict()]})
    assert steered["choices"][0]["message"]["content"] == direct(tiny, interventions=[add])
    assert steered["choices"][0]["message"]["content"] != direct(tiny)
    bad = steerlab.AddVector(99, vec, 1.0).to_dict()
    status, body = chat(server, {"interventions": [bad]})
    assert status == 400 and "layer" in body["error"]["message"].lower()


def test_startup_steering_and_replace(tiny):
    add = steerlab.AddVector(1, torch.randn(64, generator=torch.Generator().manual_seed(2)), 40.0)
    with start_server(tiny, interventions=[add]) as srv:
        _, steered = call(
            f"{srv.url}/chat/completions",
            {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12, "temperature": 0},
        )
        _, plain = call(
            f"{srv.url}/chat/completions",
            {
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 12,
                "temperature": 0,
                "steerlab": {"interventions": [], "replace": True},
            },
        )
    assert steered["choices"][0]["message"]["content"] == direct(tiny, interventions=[add])
    assert plain["choices"][0]["message"]["content"] == direct(tiny)


def test_concurrent_requests_are_batched_and_rows_stay_independent(tiny):
    prompts = [
        "Fold a sheet.",
        "Boil an egg, please.",
        "Why is the sky blue?",
        "Hi",
        "Name three colours.",
        "Count to five.",
    ]
    with start_server(tiny, max_batch=8, batch_wait_s=0.3) as srv:
        results = [None] * len(prompts)

        def one(i):
            results[i] = call(
                f"{srv.url}/chat/completions",
                {"messages": [{"role": "user", "content": prompts[i]}], "max_tokens": 10, "temperature": 0, "seed": i},
            )[1]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert srv.batcher.largest_batch > 1
    for p, r in zip(prompts, results):
        assert r["choices"][0]["message"]["content"] == direct(tiny, p, n=10)
