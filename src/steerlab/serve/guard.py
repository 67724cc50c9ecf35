"""What stands between the socket and the app: key check, body cap and timeouts, all before the body is read.

`Guard` is a plain ASGI middleware: it checks the API key and Content-Length from the headers alone,
then reads the body itself, counting bytes as they arrive (413 past the cap, even without a
Content-Length) and timing out a body that trickles in (408), before the app sees any of it. `HeadTimeoutH11` closes a connection whose request head does not arrive in time
(slow-loris) with a 408.
"""

from __future__ import annotations

import asyncio
import hmac
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from steerlab.serve.protocol import error_body

OPEN_PATHS = ("/health",)  # answered without a key (no model output, no settings)


class _Refused(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


async def send_error(send, status: int, message: str, kind: str = "invalid_request_error", close: bool = False) -> None:
    """An OpenAI-shaped JSON error straight on the ASGI channel."""
    body = json.dumps(error_body(status, message, kind)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Guard:
    """ASGI middleware: API key, Content-Length and body size/time limits, checked before the app reads anything."""

    def __init__(self, app, api_key: str | None, max_body: int, body_timeout: float):
        self.app, self.api_key, self.max_body, self.body_timeout = app, api_key, max_body, body_timeout

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        if not self.api_key:
            return True
        value = headers.get(b"authorization", b"").decode("latin-1")
        token = value[7:].strip() if value[:7].lower() == "bearer " else ""
        return hmac.compare_digest(token.encode(), self.api_key.encode())

    def _length(self, headers: dict[bytes, bytes]) -> int | None:
        raw = headers.get(b"content-length")
        if raw is None:
            return None
        text = raw.decode("latin-1").strip()
        if not text.isdigit():
            raise _Refused(400, "Content-Length must be a non-negative integer.")
        if int(text) > self.max_body:
            raise _Refused(413, f"The request body is larger than this server accepts ({self.max_body} bytes).")
        return int(text)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        started = False

        async def tracked_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if scope["path"].rstrip("/") not in OPEN_PATHS and not self._authorised(headers):
                raise _Refused(
                    401, "Invalid or missing API key; send it as 'Authorization: Bearer KEY'.", "authentication_error"
                )
            self._length(headers)
            body, gone = await self._read_body(receive)
            await self.app(scope, self._replay(body, gone, receive), tracked_send)
        except _Refused as err:
            if started:
                raise
            await send_error(send, err.status, err.message, err.kind, close=err.status in (408, 413))

    async def _read_body(self, receive) -> tuple[bytes, bool]:
        """The whole body (capped, each piece timed) before the app sees any of it; (body, client gone)."""
        chunks, seen = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise _Refused(408, f"The request body did not arrive within {self.body_timeout:g} s.") from None
            if message["type"] != "http.request":
                return b"".join(chunks), True
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_body:
                raise _Refused(413, f"The request body is larger than this server accepts ({self.max_body} bytes).")
            if not message.get("more_body", False):
                return b"".join(chunks), False

    def _replay(self, body: bytes, gone: bool, receive):
        """A receive that hands the app the body read already, then the client's later messages (disconnect)."""
        first = True

        async def replay():
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": body, "more_body": False}
            if gone:
                return {"type": "http.disconnect"}
            return await receive()

        return replay


class HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request head (line and headers): 408 and close."""

    head_timeout = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # the next request's head gets its own deadline
            self._stop_head_timer()
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def connection_lost(self, exc) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        body = json.dumps(error_body(408, f"The request head did not arrive within {self.head_timeout:g} s.")).encode()
        head = (
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
        )
        self.transport.write(head + body)
        self.transport.close()
