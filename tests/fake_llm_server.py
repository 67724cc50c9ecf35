"""A scripted fake LLM HTTP server on 127.0.0.1 for judge-client tests (OpenAI and Anthropic shapes)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLMServer:
    """`script(path, body, headers) -> (status, payload_dict, extra_headers)`; records every request."""

    def __init__(self, script, delay: float = 0.0, port: int = 0):
        self.script = script
        self.delay = delay
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.start_times: list[float] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake._lock:
                    fake.requests.append(
                        {
                            "method": method,
                            "path": self.path,
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                    fake.start_times.append(time.monotonic())
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(fake.delay)
                    status, payload, extra = fake.script(
                        self.path, body, {k.lower(): v for k, v in self.headers.items()}
                    )
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        class Quiet(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # clients that time out hang up: expected here
                pass

        self.httpd = Quiet(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.root = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def posts(self):
        return [r for r in self.requests if r["method"] == "POST"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def chat_reply(content: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def attempts_json(*scores: float) -> str:
    items = ", ".join(f'{{"attempt_text": "attempt {i}", "score": {s}}}' for i, s in enumerate(scores))
    return f'Assessment.\n<json>{{"attempts": [{items}]}}</json>'


def judge_script(path, body, headers):
    """A deterministic fake judge: valid verdicts for prompts about omelettes, averages or ironing, junk otherwise."""
    if path.endswith("/models"):
        return 200, {"data": [{"id": "fake-judge"}]}, None
    text = body["messages"][-1]["content"]
    if any(w in text for w in ("omelette", "average", "iron")):
        return 200, chat_reply(attempts_json(85)), None
    return 200, chat_reply("Looks fine to me!"), None


if __name__ == "__main__":  # a child process for kill tests: python fake_llm_server.py PORT
    import sys

    server = FakeLLMServer(judge_script, delay=0.05, port=int(sys.argv[1]))
    print("ready", flush=True)
    threading.Event().wait()
