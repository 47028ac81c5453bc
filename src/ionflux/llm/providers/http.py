"""The LLM adapters' HTTP calls: `wire.Origin` (keep-alive HTTP/1.1), under the HTTP toolkit's rules.

Why not the toolkit's `ProviderClient` (httpx), nor aiohttp: LLM calls are many, and the client was the largest
part of the gateway's CPU per call (see `wire.py` for the measurements). The rules stay the toolkit's: the
profile's timeouts and total deadline, its circuit breaker per host, its per-attempt metrics, and every
failure mapped by `core.http.failures` (so no credential reaches an error). A call is one attempt, since
fallback chains handle a failing provider, except that a connection that never opened is tried once more; a
connection dropped after the request was sent is never retried (the answer may already be paid for).
No proxy is taken from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from ionflux.core.errors import AuthFailed, IonfluxError, ProviderApiError
from ionflux.core.http import ProviderHttpMetrics, ProviderProfile, parse_retry_after
from ionflux.core.http.breaker import BreakerBoard, CircuitBreaker
from ionflux.core.http.failures import error_for_response, error_for_transport, secret_values
from ionflux.core.http.retry import full_jitter
from ionflux.llm.providers.wire import Answer, HeaderRefused, Origin, StreamedAnswer

log = logging.getLogger("ionflux.http")


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every LLM connection of the process (each costs tens of ms to build)."""
    return httpx.create_ssl_context()


_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class HttpProvider:
    """One provider's endpoint: whole JSON answers (`post`, `post_json`) and server-sent event streams."""

    def __init__(self, profile: ProviderProfile, metrics: ProviderHttpMetrics) -> None:
        self.profile = profile
        self.metrics = metrics
        self.breakers = BreakerBoard(profile.breaker)
        self._origins: dict[str, Origin] = {}
        self._urls: dict[str, tuple[str, str, str]] = {}
        self._base_headers = {k.lower(): v for k, v in profile.default_headers}
        self._observed: dict[str, str] = {}

    async def aclose(self) -> None:
        origins, self._origins = list(self._origins.values()), {}
        for origin in origins:
            await origin.aclose()

    def _url(self, path: str) -> tuple[str, str, str]:
        """The URL of a path, its breaker's host key and its request target, worked out once per path."""
        known = self._urls.get(path)
        if known is None:
            url = self.profile.url(path, "default")
            parts = httpx.URL(url)
            target = parts.raw_path.decode("ascii") or "/"
            known = self._urls[path] = (url, f"{parts.host}:{parts.port or ''}", target)
        return known

    def _origin(self, host: str, url: str) -> Origin:
        origin = self._origins.get(host)
        if origin is None:
            t = self.profile.timeouts
            origin = self._origins[host] = Origin(url, tls=_tls() if url.startswith("https:") else None,
                                                  connect_timeout=t.pool + t.connect, read_timeout=t.read)
        return origin

    def _headers(self, content_type: str, key: str | None, accept: str | None = None) -> dict[str, str]:
        headers = {**self._base_headers, "content-type": content_type}
        if accept:
            headers["accept"] = accept
        if key is not None:
            headers[self.profile.auth.header] = self.profile.auth.header_value(key)
        return headers

    def _head(self, origin: Origin, target: str, content_type: str, key: str | None, accept: str | None,
              length: int) -> bytes:
        try:
            return origin.head("POST", target, self._headers(content_type, key, accept), length)
        except HeaderRefused as exc:
            provider = self.profile.name
            if exc.header.lower() == self.profile.auth.header.lower():
                raise AuthFailed(f"the API key for {provider} holds characters an HTTP header cannot carry (CR, "
                                 f"LF, NUL or non-ASCII): store it again", details={"provider": provider}) from None
            raise ProviderApiError(f"the {exc.header} header configured for {provider} cannot be sent: {exc}",
                                   details={"provider": provider}) from None

    def _observe(self, breaker: CircuitBreaker) -> None:
        state = breaker.state
        if self._observed.get(breaker.host) != state:  # the gauge moves only when the state does
            self._observed[breaker.host] = state
            self.metrics.circuit_state(self.profile.name, breaker.host, state)

    async def post(self, path: str, body: bytes, content_type: str, key: str | None) -> bytes:
        """POST and return the body of a 2xx answer; every failure is an IonfluxError."""
        profile, metrics = self.profile, self.metrics
        url, host, target = self._url(path)
        origin = self._origin(host, url)
        head = self._head(origin, target, content_type, key, None, len(body))
        breaker = self.breakers.for_host(host)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + profile.timeouts.total
        attempt = 0
        while True:
            attempt += 1
            self._gate(breaker)
            started = time.monotonic()
            try:
                answer = await origin.request(head, body, deadline)
            except httpx.TransportError as error:
                metrics.latency.labels(profile.name).observe(time.monotonic() - started)
                breaker.record_failure()
                self._observe(breaker)
                metrics.requests.labels(profile.name, "POST", _reason(error)).inc()
                if isinstance(error, _NEVER_SENT) and attempt < profile.retry.max_attempts:
                    delay = full_jitter(attempt, profile.retry)
                    if loop.time() + delay < deadline:
                        metrics.retries.labels(profile.name, _reason(error)).inc()
                        await asyncio.sleep(delay)
                        continue
                raise self._failed(error_for_transport(profile.name, "POST", httpx.URL(url), error, attempt)) from None
            except BaseException:
                breaker.release_probe()
                raise
            metrics.latency.labels(profile.name).observe(time.monotonic() - started)
            status = answer.status
            metrics.requests.labels(profile.name, "POST", str(status)).inc()
            if status >= 500:
                breaker.record_failure()
            else:
                breaker.record_success()
            self._observe(breaker)
            if status < 400:
                return answer.body
            raise self._failed(self._error(url, content_type, key, answer, attempt))

    async def post_json(self, path: str, body: dict[str, Any], key: str | None) -> Any:
        return parse_json(self.profile.name, await self.post(path, orjson.dumps(body), "application/json", key))

    @contextlib.asynccontextmanager
    async def open_stream(self, path: str, body: dict[str, Any], key: str | None) -> AsyncIterator[StreamedAnswer]:
        """POST and yield a streaming 2xx response; every failure before that is an IonfluxError."""
        profile, metrics = self.profile, self.metrics
        url, host, target = self._url(path)
        origin = self._origin(host, url)
        data = orjson.dumps(body)
        head = self._head(origin, target, "application/json", key, "text/event-stream", len(data))
        breaker = self.breakers.for_host(host)
        self._gate(breaker)
        try:
            response = await origin.open(head, data)
        except httpx.TransportError as error:
            breaker.record_failure()
            self._observe(breaker)
            metrics.requests.labels(profile.name, "POST", _reason(error)).inc()
            raise self._failed(error_for_transport(profile.name, "POST", httpx.URL(url), error, 1)) from None
        except BaseException:
            breaker.release_probe()
            raise
        response.url = url
        metrics.requests.labels(profile.name, "POST", str(response.status)).inc()
        try:
            if response.status >= 400:
                (breaker.record_failure if response.status >= 500 else breaker.record_success)()
                self._observe(breaker)
                try:
                    content = await response.read()
                except httpx.TransportError:
                    content = b""
                answer = Answer(response.status, response.headers, content)
                raise self._failed(self._error(url, "application/json", key, answer, 1))
            breaker.record_success()
            self._observe(breaker)
            yield response
        finally:
            response.release()

    def _gate(self, breaker: CircuitBreaker) -> None:
        try:
            breaker.before_call(self.profile.name)
        finally:
            self._observe(breaker)

    def _error(self, url: str, content_type: str, key: str | None, answer: Answer, attempts: int) -> IonfluxError:
        """The toolkit's mapping of an error answer (rare: the httpx objects it reads are made only here)."""
        response = httpx.Response(answer.status, headers=answer.headers, content=answer.body,
                                  request=httpx.Request("POST", url))
        headers = self._headers(content_type, key)
        return error_for_response(self.profile.name, response,
                                  secrets=secret_values(headers, [self.profile.auth.header]),
                                  body_limit=self.profile.error_body_limit, attempts=attempts,
                                  retry_after=parse_retry_after(answer.header("retry-after")),
                                  throttled=answer.status == 429)

    def _failed(self, exc: IonfluxError) -> IonfluxError:
        self.metrics.errors.labels(self.profile.name, exc.code).inc()
        log.warning("provider call failed", extra={
            "provider": self.profile.name, "method": "POST", "code": exc.code, "status": exc.details.get("status"),
            "path": exc.details.get("path"), "attempts": exc.details.get("attempts")})
        return exc


def _reason(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    return "connect_error" if isinstance(error, httpx.ConnectError) else "connection_error"


def parse_json(provider: str, content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise ProviderApiError(f"{provider} answered with a body that is not JSON",
                               details={"provider": provider}) from None


async def _lines(provider: str, response: StreamedAnswer) -> AsyncIterator[str]:
    buffer = b""
    try:
        async for chunk in response.chunks():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode()
    except httpx.TransportError as exc:
        raise error_for_transport(provider, "POST", httpx.URL(response.url), exc, 1) from None
    if buffer:
        yield buffer.removesuffix(b"\r").decode()


async def sse_events(provider: str, response: StreamedAnswer) -> AsyncIterator[tuple[str | None, str]]:
    """(event, data) pairs of a server-sent event stream.

    Written here (30 lines) rather than taking a dependency: only `event:` and `data:` matter to us.
    """
    event: str | None = None
    data: list[str] = []
    async for line in _lines(provider, response):
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event, "\n".join(data)

