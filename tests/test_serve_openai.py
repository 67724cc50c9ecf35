"""The server through the official `openai` client, its answers to attacks, and a bounded loopback load test."""

import gc
import json
import socket
import threading
import time
import urllib.request

import openai
import pytest

import steerlab
from serve_helpers import call
from steerlab.sae.core import Sae, SaeConfig
from steerlab.serve import start_server

KEY = "serve-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "How do you fold a sheet?"


@pytest.fixture(scope="module")
def tiny():
    from steerlab.testing.tiny import tiny_model

    return tiny_model("llama")


@pytest.fixture(scope="module")
def sae():
    return Sae.random(SaeConfig(d_in=64, d_sae=32, layer=1), seed=3)


@pytest.fixture(scope="module")
def server(tiny, sae):
    with start_server(
        tiny,
        api_key=KEY,
        saes={"res1": sae},
        max_batch=8,
        batch_wait_s=0.05,
        head_timeout=1.0,
        body_timeout=1.0,
        max_body=400_000,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)


def direct(model, prompt=PROMPT, interventions=None, chat=True, n=12):
    return steerlab.generate(model, [prompt], interventions, max_new_tokens=n, temperature=0, chat=chat)[0].text


def test_models_chat_and_completions(client, tiny):
    assert [m.id for m in client.models.list().data] == ["tiny-llama"]
    reply = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": PROMPT}], max_tokens=12, temperature=0
    )
    assert reply.choices[0].message.content == direct(tiny) and reply.usage.completion_tokens <= 12
    text = client.completions.create(model="tiny-llama", prompt="Once upon", max_tokens=8, temperature=0)
    assert text.choices[0].text == direct(tiny, "Once upon", chat=False, n=8)


def test_streaming_sends_many_chunks_that_join_to_the_plain_answer(client):
    kwargs = dict(model="tiny-llama", messages=[{"role": "user", "content": PROMPT}], max_tokens=16, temperature=0)
    plain = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens  # usage on request, in the last chunk
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    streamed = client.completions.create(
        model="tiny-llama", prompt="The cat", max_tokens=10, temperature=0, stream=True
    )
    texts = [c.choices[0].text for c in streamed if c.choices]
    assert len([t for t in texts if t]) > 1
    assert (
        "".join(texts)
        == client.completions.create(model="tiny-llama", prompt="The cat", max_tokens=10, temperature=0).choices[0].text
    )


def test_steering_by_sae_name(client, tiny, sae):
    steer = {"type": "SteerLatent", "sae": "res1", "latent": 5, "strength": 40.0}
    reply = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=12,
        temperature=0,
        extra_body={"steerlab": {"interventions": [steer]}},
    )
    expected = direct(tiny, interventions=[steerlab.SteerLatent(sae, 5, 40.0)])
    assert reply.choices[0].message.content == expected and expected != direct(tiny)


def test_key_required(server):
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
    assert err.value.status_code == 401 and err.value.body["type"] == "authentication_error"


def test_non_loopback_needs_a_key(tiny):
    with pytest.raises(steerlab.SteerlabError, match="API key"):
        start_server(tiny, host="0.0.0.0")


def _raw(server, data: bytes, wait: float = 5.0) -> str:
    """Send raw bytes on a fresh connection; everything the server answered before closing (or the wait)."""
    with socket.create_connection((server.host, server.port), timeout=wait) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all
        got = b""
        try:
            while True:
                part = s.recv(65536)
                if not part:
                    break
                got += part
                if b"\r\n\r\n" in got and b"content-length" in got.lower():
                    head, _, body = got.partition(b"\r\n\r\n")
                    length = int(
                        [ln for ln in head.lower().split(b"\r\n") if ln.startswith(b"content-length")][0].split(b":")[1]
                    )
                    if len(body) >= length:
                        break
        except socket.timeout:
            pass
    return got.decode(errors="replace")


def _post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return (head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


def _steer(server, interventions):
    return call(
        f"{server.url}/chat/completions",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "steerlab": {"interventions": interventions},
        },
        AUTH,
    )


@pytest.mark.parametrize(
    "ref", ["/etc/passwd", "/etc", "/nonexistent/secret", "hf://someone/some-repo", "../res1", {"sae": "/root"}]
)
def test_sae_paths_are_refused_alike_and_reveal_nothing(server, ref):
    status, body = _steer(server, [{"type": "SteerLatent", "sae": ref, "latent": 1, "strength": 1.0}])
    message = body["error"]["message"]
    assert status == 400 and "SAEs are named, not located" in message and "res1" in message
    assert "/" not in message.replace("--sae NAME=PATH", "")  # the same sentence, no path, whatever the reference


def test_attacks_are_answered_4xx(server):
    ok_body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    auth = {"Authorization": AUTH["Authorization"]}
    negative = _raw(server, _post("/v1/chat/completions", ok_body, {**auth, "Content-Length": "-5"}))
    assert negative.startswith("HTTP/1.1 400")
    huge = _raw(server, _post("/v1/chat/completions", b"", {**auth, "Content-Length": str(10**12)}))
    assert huge.startswith("HTTP/1.1 413") and "larger than" in huge
    # The key is checked before the body is read: no key and a huge body is 401 at once.
    unauth = _raw(server, _post("/v1/chat/completions", b"", {"Content-Length": str(10**12)}))
    assert unauth.startswith("HTTP/1.1 401")
    chunked = _raw(
        server,
        _post(
            "/v1/chat/completions",
            (b"40000\r\n" + b"x" * 0x40000 + b"\r\n") * 2,
            {**auth, "Transfer-Encoding": "chunked"},
        ),
    )
    assert chunked.startswith("HTTP/1.1 413")
    status, body = call(
        f"{server.url}/chat/completions", {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 4}, AUTH
    )
    assert (
        status == 400
        and body["error"]["code"] == "context_length_exceeded"
        and "context of 256" in body["error"]["message"]
    )
    status, body = call(f"{server.url}/completions", {"prompt": "x" * 200, "max_tokens": 100}, AUTH)
    assert status == 400 and "context" in body["error"]["message"]
    status, body = _steer(
        server, [{"type": "SteerLatent", "sae": "res1", "latent": list(range(50_000)), "strength": 1.0}]
    )
    assert status == 400 and "at most 256 latent ids" in body["error"]["message"]
    status, body = _steer(server, [{"type": "Record", "layer": 1}])
    assert status == 400 and "Record is not available" in body["error"]["message"]
    status, body = _steer(server, [{"type": "AddVector", "layer": 1, "vector": [0.0] * 64, "strength": 1.0}] * 17)
    assert status == 400 and "at most 16 interventions" in body["error"]["message"]
    status, body = call(
        f"{server.url}/chat/completions",
        b'{"messages": [{"role": "user", "content": "x"}], "steerlab": '
        b'{"interventions": [{"type": "AddVector", "layer": 1, "vector": [1e999], "strength": 1}]}}',
        AUTH,
    )
    assert status == 400


def test_slow_loris_gets_408(server):
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # the head never finishes
        got = s.recv(4096).decode()
    assert got.startswith("HTTP/1.1 408") and time.monotonic() - start < 8
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as s:  # the body trickles, then stops
        s.sendall(_post("/v1/chat/completions", body[:10], {**AUTH, "Content-Length": str(len(body))}))
        got = s.recv(4096).decode()
    assert got.startswith("HTTP/1.1 408")


def test_a_failing_job_does_not_fail_its_batch_mates(tiny):
    """A job whose generation fails is retried alone; the others in its batch get their answers."""
    from steerlab.serve import HFBackend

    class Flaky(HFBackend):
        def generate(self, requests, on_text=None):
            if any(r.prompt == [{"role": "user", "content": "boom"}] for r in requests):
                raise RuntimeError("one bad row")
            return super().generate(requests, on_text)

    with start_server(Flaky(tiny), max_batch=8, batch_wait_s=0.3) as srv:
        results = {}

        def one(text):
            results[text] = call(
                f"{srv.url}/chat/completions",
                {"messages": [{"role": "user", "content": text}], "max_tokens": 6, "temperature": 0},
            )

        threads = [threading.Thread(target=one, args=(t,)) for t in ("boom", "Hi", "Fold a sheet.")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert srv.batcher.retried_alone >= 2
    assert results["boom"][0] == 500 and "one bad row" not in json.dumps(results["boom"][1])
    for text in ("Hi", "Fold a sheet."):
        assert results[text][0] == 200 and results[text][1]["choices"][0]["message"]["content"] == direct(
            tiny, text, n=6
        )


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_load_64_clients_mixed_streaming_and_disconnects(tiny):
    prompts = ["Fold a sheet.", "Boil an egg, please.", "Why is the sky blue?", "Name three colours."]
    expected = {p: direct(tiny, p, n=10) for p in prompts}
    with start_server(tiny, max_batch=16, batch_wait_s=0.05, max_queue=128) as srv:

        def one(i: int, out: dict) -> None:
            prompt = prompts[i % len(prompts)]
            body = {
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 10,
                "temperature": 0,
                "stream": i % 2 == 0,
            }
            req = urllib.request.Request(
                f"{srv.url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                if i % 8 == 6:  # a streaming client that leaves after the first event
                    resp.readline()
                    out[i] = "left"
                    return
                raw = resp.read().decode()
            if body["stream"]:
                events = [
                    json.loads(ln[6:]) for ln in raw.splitlines() if ln.startswith("data: ") and ln != "data: [DONE]"
                ]
                text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
                assert raw.rstrip().endswith("data: [DONE]")
            else:
                text = json.loads(raw)["choices"][0]["message"]["content"]
            out[i] = text == expected[prompt]

        def round_of(n: int) -> dict:
            out: dict = {}
            threads = [threading.Thread(target=one, args=(i, out)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert not any(t.is_alive() for t in threads), "a client hung"
            return out

        round_of(16)  # warm-up: allocator pools, thread pools
        gc.collect()
        before = _rss_mb()
        out = round_of(64)
        assert len(out) == 64 and all(v is True or v == "left" for v in out.values())
        deadline = time.monotonic() + 10
        while srv.batcher.waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.batcher.waiting == 0
        gc.collect()
        after = _rss_mb()
        print(
            f"RSS before {before:.0f} MB, after 64 clients {after:.0f} MB; batches {srv.batcher.batches_run}, "
            f"largest {srv.batcher.largest_batch}"
        )
        assert after - before < 64
        status, _ = call(
            f"{srv.url}/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        )
        assert status == 200  # still serving


def test_full_queue_answers_503(tiny):
    from steerlab.serve import HFBackend

    gate = threading.Event()

    class Slow(HFBackend):
        def generate(self, requests, on_text=None):
            gate.wait(30)
            return super().generate(requests, on_text)

    with start_server(Slow(tiny), max_batch=1, batch_wait_s=0.0, max_queue=1) as srv:
        results = []

        def one():
            results.append(
                call(f"{srv.url}/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})[
                    0
                ]
            )

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        gate.set()
        for t in threads:
            t.join(60)
    assert 503 in results and 200 in results


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_its_job(tiny, stream):
    from steerlab.serve import HFBackend

    class Slow(HFBackend):  # 20 ms per token: 200 tokens would take 4 s
        def generate(self, requests, on_text=None):
            def slow(i, piece):
                time.sleep(0.02)
                return on_text(i, piece)

            return super().generate(requests, slow)

    with start_server(Slow(tiny)) as srv:
        body = json.dumps({"prompt": "The cat", "max_tokens": 200, "temperature": 0, "stream": stream}).encode()
        with socket.create_connection((srv.host, srv.port), timeout=10) as s:
            s.sendall(_post("/v1/completions", body, {"Content-Length": str(len(body))}))
            if stream:
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
            else:
                time.sleep(0.5)
        deadline = time.monotonic() + 3
        while not srv.batcher.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.batcher.cancelled == 1
