"""ASGI middleware: request ids, access logs and metrics, and the request-body size limit."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ionflux.core.observability import Metrics, new_request_id, request_id_var

log = logging.getLogger("ionflux.http")
_REQUEST_ID = "x-request-id"
_REQUEST_ID_BYTES = _REQUEST_ID.encode()


class RequestContextMiddleware:
    """Gives every request an id (kept from X-Request-Id when sane), logs it once, and counts it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled series by (method, route, status): `labels()` costs more than the update itself.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == _REQUEST_ID_BYTES), b"").decode("latin-1")
        rid = given if given and len(given) <= 64 and given.isprintable() else new_request_id()
        token = request_id_var.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (_REQUEST_ID_BYTES, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_name = getattr(route, "path", "unmatched")
            key = (scope["method"], route_name, status)
            series = self._series.get(key)
            if series is None:
                if len(self._series) > 1000:  # methods come from clients: keep the map bounded
                    self._series.clear()
                series = self._series[key] = (self.metrics.http_requests.labels(key[0], route_name, str(status)),
                                              self.metrics.http_latency.labels(key[0], route_name))
            series[0].inc()
            series[1].observe(elapsed)
            log.info(
                "%s %s %s", scope["method"], scope["path"], status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with a 413, by Content-Length up front or while streaming.

    The limit is `max_bytes`, except under a path prefix that a service declared a limit for (the
    longest matching prefix wins), e.g. 1,000-vector memory upserts or 25 MB audio uploads.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = sorted((overrides or {}).items(), key=lambda item: len(item[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides:
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        if declared is not None or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            # With Content-Length the server's HTTP parser enforces the framing we just checked.
            await self.app(scope, receive, send)
            return
        # A streamed (chunked) body: read it here, up to the limit, then replay it to the app, so the
        # app never sees a partial body and the client gets a 413 rather than a parse error.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._reject(send, limit)
                return
            chunks.append(chunk)
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

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, limit: int) -> None:
        setting = "IONFLUX_MAX_BODY_BYTES" if limit == self.max_bytes else "a per-route limit of this service"
        body = json.dumps(
            {"error": {"code": "PAYLOAD_TOO_LARGE",
                       "message": f"request body exceeds the limit of {limit} bytes ({setting})"}}
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

