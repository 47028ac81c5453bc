"""`FaultMiddleware`: the ASGI layer that applies a `FaultScript` to every request a simulator gets.

It logs the request, applies latency, scripted faults and rate limits, then calls the app. Requests under
`/_sandbox/` go to the admin app (`ionflux.sandbox.admin`) and are never faulted or logged.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ionflux.sandbox.faults import ADMIN_PREFIX, TRANSPORT_EXTENSION, FaultScript, RecordedRequest


def _body_bytes(body: str | dict[str, Any] | list[Any] | None) -> tuple[bytes, bytes]:
    if body is None:
        return b"", b"text/plain; charset=utf-8"
    if isinstance(body, str):
        return body.encode(), b"text/plain; charset=utf-8"
    return json.dumps(body).encode(), b"application/json"


async def send_simple(
    send: Send, status: int, body: str | dict[str, Any] | list[Any] | None, headers: dict[str, str]
) -> None:
    payload, content_type = _body_bytes(body)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", content_type))
    raw.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class FaultMiddleware:
    """ASGI middleware: log the request, apply latency, scripted faults and rate limits, then call the app."""

    def __init__(self, app: ASGIApp, script: FaultScript, admin: ASGIApp | None = None) -> None:
        self.app = app
        self.script = script
        if admin is None:
            from ionflux.sandbox.admin import admin_app

            admin = admin_app(script)
        self.admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            await self.admin(scope, receive, send)
            return
        raw_receive = receive  # faults that wait for a disconnect read this, not the replaying one
        body, receive = await _buffer_body(receive)
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            headers[name] = f"{headers[name]}, {v.decode('latin-1')}" if name in headers else v.decode("latin-1")
        method: str = scope["method"]
        entry = RecordedRequest(
            method, path, scope.get("query_string", b"").decode("latin-1"), headers, body, time.time(), time.monotonic()
        )
        self.script.record(entry)
        if self.script.latency > 0:
            await asyncio.sleep(self.script.latency)

        fault = self.script.take(method, path)
        if fault is not None:
            if fault.kind == "status":
                entry.outcome = f"status:{fault.status}"
                await send_simple(send, fault.status, fault.body, fault.headers)
                return
            if fault.kind == "reset":
                entry.outcome = "reset"
                await _reset_connection(scope, raw_receive)
                return
            if fault.kind == "timeout":
                entry.outcome = "timeout"
                if await _hold(raw_receive, fault.seconds, self.script):
                    return  # the client gave up, as intended
            elif fault.kind == "delay":
                await asyncio.sleep(fault.seconds)

        decision = self.script.check_rate_limit(method, path, headers)
        if decision is not None and decision.limited:
            entry.outcome = "rate_limited"
            await send_simple(send, decision.rule.status, decision.rule.body, decision.headers)
            return
        if decision is None or not decision.headers:
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers.items()]

        async def send_with_limit_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_limit_headers)


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole request body (for the log) and hand the app a receive() that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _hold(receive: Receive, seconds: float, script: FaultScript) -> bool:
    """Wait up to `seconds`; True if the client disconnected meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    pending: asyncio.Future[Message] = asyncio.ensure_future(receive())
    try:
        while (remaining := deadline - loop.time()) > 0 and not script.closing:
            done, _ = await asyncio.wait({pending}, timeout=min(remaining, 0.05))
            if done:
                if pending.result()["type"] == "http.disconnect":
                    return True
                pending = asyncio.ensure_future(receive())
        return False
    finally:
        if not pending.done():
            pending.cancel()


async def _reset_connection(scope: Scope, receive: Receive) -> None:
    transport = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if transport is None:
        raise RuntimeError("connection reset needs the SimulatorServer's HTTP protocol (no transport in scope)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout makes close() send a RST instead of a FIN: a real "connection reset".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let connection_lost run so the server sees the disconnect and does not write a 500 of its own.
    try:
        await asyncio.wait_for(receive(), timeout=1.0)
    except TimeoutError:
        pass
