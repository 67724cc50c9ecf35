"""A small stdlib HTTP client for LLM judges: JSON POST/GET, retries with backoff, rate limit.

Retries cover timeouts, dropped connections, 429 and 5xx; 4xx errors such as a bad key are final.
API keys travel only in request headers built at call time; nothing here logs or stores them. A
redirect to another host (or scheme or port) drops every credential header before it is followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

AUTH_HEADERS = ("authorization", "x-api-key", "api-key", "proxy-authorization", "cookie")


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is localhost or a loopback address."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class _NoAuthAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry a key to a different scheme, host or port."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for store in (new.headers, new.unredirected_hdrs):
                for name in list(store):
                    if name.lower() in AUTH_HEADERS:
                        del store[name]
        return new


_OPENER = urllib.request.build_opener(_NoAuthAcrossHosts)


class HttpError(Exception):
    """A failed call: `status` is the HTTP status (None for a network failure); `retryable` says if retrying may help."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; `retry_after` from a 429 is honoured up to max_delay."""

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.max_delay, retry_after)
        return min(self.max_delay, self.base_delay * (2**attempt)) * (0.5 + random.random() / 2)


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart across threads (calls may still overlap)."""

    def __init__(self, rate_per_s: float | None):
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


_KEYLIKE = re.compile(r"(?i)\b(?:sk|pk|rk|key|tok(?:en)?)[-_](?=[-_A-Za-z0-9*.]*[0-9*])[-_A-Za-z0-9*.]{6,}")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask anything that looks like a key (servers echo parts of bad keys back) and any known secret."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def _error_detail(body: bytes) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data)
        msg = err.get("message") if isinstance(err, dict) else err
        return redact(str(msg)[:200])
    except (ValueError, AttributeError):
        return redact(body[:200].decode("utf-8", "replace"))


def request_json(method: str, url: str, headers: dict[str, str], body: Any | None, timeout: float) -> Any:
    """One HTTP call returning parsed JSON; raises HttpError with a status and a retryable flag."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **headers})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc.read() or b"")
        retry = exc.code == 429 or exc.code >= 500 or exc.code == 408
        err = HttpError(f"HTTP {exc.code} from {url}: {detail}", exc.code, retry)
        err.retry_after = _retry_after(exc.headers.get("retry-after") if exc.headers else None)  # type: ignore[attr-defined]
        raise err from None
    except (socket.timeout, TimeoutError) as exc:
        raise HttpError(f"Timed out after {timeout:g}s calling {url}.", None, True) from exc
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HttpError(f"Cannot reach {url}: {reason}.", None, True) from exc
    except (http.client.HTTPException, ValueError) as exc:  # a malformed or cut-off reply: a transport error too
        raise HttpError(f"Broken reply from {url}: {type(exc).__name__}.", None, True) from exc
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise HttpError(f"{url} returned a body that is not JSON: {payload[:80]!r}.", None, False) from exc


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def call_with_retries(fn, policy: RetryPolicy, limiter: RateLimiter | None = None) -> Any:
    """Call fn() (which raises HttpError) with rate limiting and backoff on retryable failures."""
    attempt = 0
    while True:
        if limiter is not None:
            limiter.wait()
        try:
            return fn()
        except HttpError as exc:
            if not exc.retryable or attempt >= policy.max_retries:
                raise
            time.sleep(policy.delay(attempt, getattr(exc, "retry_after", None)))
            attempt += 1
