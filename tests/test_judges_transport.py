"""The judge's HTTP transport: where keys may go, redirects, transport errors, and the per-trial retry cap."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from steerlab.errors import SteerlabError
from steerlab.judges.backends import OpenAIBackend
from steerlab.judges.http import HttpError, RetryPolicy, request_json
from steerlab.judges.types import Grade
from steerlab.store import RunStore
from steerlab.store.runstore import MAX_GRADE_TRIES
from steerlab.store.trial import Trial


class Recorder:
    """A loopback server that records each request's headers; `route` maps a path to (status, headers, body)."""

    def __init__(self, route):
        self.seen: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = route(self.path)
                if status is None:  # drop the connection mid-reply
                    self.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"cho')
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                data = json.dumps(body).encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


MODELS = (200, {}, {"data": [{"id": "m"}]})
REPLY = (200, {}, {"choices": [{"message": {"content": "ok"}}]})


@pytest.fixture
def plain_server():
    srv = Recorder(lambda path: MODELS if path.endswith("/models") else REPLY)
    yield srv
    srv.close()


def test_default_key_stays_with_its_provider(plain_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default-secret-1")
    backend = OpenAIBackend("m", f"http://127.0.0.1:{plain_server.port}/v1")
    assert backend.complete("s", "u") == "ok"
    assert "authorization" not in plain_server.seen[-1][1]  # OPENAI_API_KEY is for api.openai.com only
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-named-secret-2")
    named = OpenAIBackend("m", f"http://127.0.0.1:{plain_server.port}/v1", "MY_JUDGE_KEY")
    named.complete("s", "u")
    assert plain_server.seen[-1][1]["authorization"] == "Bearer sk-named-secret-2"  # named explicitly: sent


def test_no_key_over_plain_http_off_loopback(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-named-secret-3")
    backend = OpenAIBackend("m", "http://judge.example.org/v1", "MY_JUDGE_KEY", retry=RetryPolicy(max_retries=0))
    with pytest.raises(SteerlabError, match="plain HTTP"):
        backend.check()
    with pytest.raises(SteerlabError, match="plain HTTP"):
        backend.complete("s", "u")


def test_cross_host_redirect_drops_the_key():
    target = Recorder(lambda path: REPLY)
    same = f"http://127.0.0.1:{target.port}"
    other = f"http://localhost:{target.port}"  # another host name: the key must not follow

    def route(path):
        if path == "/self":
            return 302, {"Location": "/landed"}, {}
        if path == "/landed":
            return REPLY
        if path == "/to-other":
            return 302, {"Location": f"{other}/x"}, {}
        return 302, {"Location": f"{same}/y"}, {}

    origin = Recorder(route)
    try:
        origin_url = f"http://127.0.0.1:{origin.port}"
        request_json(
            "GET", f"{origin_url}/to-other", {"Authorization": "Bearer sk-redirect-4", "X-Api-Key": "k"}, None, 5
        )
        assert (
            target.seen[-1][0] == "/x"
            and "authorization" not in target.seen[-1][1]
            and "x-api-key" not in target.seen[-1][1]
        )
        request_json("GET", f"{origin_url}/to-other-port", {"Authorization": "Bearer sk-redirect-4"}, None, 5)
        assert (
            target.seen[-1][0] == "/y" and "authorization" not in target.seen[-1][1]
        )  # another port is another origin
        request_json("GET", f"{origin_url}/self", {"Authorization": "Bearer sk-redirect-4"}, None, 5)
        assert (
            origin.seen[-1][0] == "/landed" and origin.seen[-1][1]["authorization"] == "Bearer sk-redirect-4"
        )  # same origin: kept
    finally:
        origin.close()
        target.close()


def test_transport_errors_are_retryable_http_errors():
    srv = Recorder(lambda path: (None, {}, None))
    try:
        with pytest.raises(HttpError) as err:
            request_json("POST", f"http://127.0.0.1:{srv.port}/v1/chat/completions", {}, {"a": 1}, 5)
        assert err.value.retryable and err.value.status is None
    finally:
        srv.close()
    with pytest.raises(HttpError) as err:  # nobody listening
        request_json("GET", f"http://127.0.0.1:{srv.port}/v1/models", {}, None, 2)
    assert err.value.retryable


def test_failed_grades_are_retried_a_capped_number_of_times_then_abandoned(tmp_path):
    store = RunStore(tmp_path, {"x": 1})
    trials = [Trial("steered", f"prompt {i}", 0, 1, 2.0) for i in range(3)]
    store.add_trials(trials)
    for t in trials:
        store.put_generation(t.key, f"answer {t.prompt}")
    store.put_grade(trials[0].key, Grade((), None, judge_id="j", rubric_version="v1"))
    for _ in range(MAX_GRADE_TRIES):
        store.put_grade(trials[1].key, Grade((), "HTTP 503", judge_id="j", rubric_version="v1"))
    store.put_grade(trials[2].key, Grade((), "timed out", judge_id="j", rubric_version="v1"))
    todo = [t.key for t, _ in store.ungraded("j", "v1")]
    assert todo == [trials[2].key]  # the abandoned trial is not retried again
    assert store.grade_counts("j", "v1") == {"generated": 3, "graded": 1, "failed": 1, "abandoned": 1, "not_tried": 0}
