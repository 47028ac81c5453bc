"""The adapter contract, and the HTTP plumbing adapters share: the toolkit client for plain calls and a
streaming path that passes the same circuit breaker and error mapping.

Streams go around `ProviderClient.request` (which returns whole responses) but not around its rules: the
breaker of the host is consulted and fed, timeouts come from the profile, errors map through
`core.http.failures`, and the credential never appears in an error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import orjson
from prometheus_client import CollectorRegistry

from ionflux.core.errors import InvalidRequest, IonfluxError, ProviderApiError
from ionflux.core.http import ProviderClient, ProviderHttpMetrics, ProviderProfile
from ionflux.core.http.failures import error_for_response, error_for_transport, secret_values
from ionflux.llm.providers.transport import LLMTransport
from ionflux.llm.types import (
    ChatCall,
    ChatResult,
    EmbeddingResult,
    StreamDelta,
    TranscriptionCall,
    TranscriptionResult,
)

log = logging.getLogger("ionflux.llm")

Capability = str  # "chat" | "stream" | "embed" | "transcribe" | "vision"


class ProviderAdapter:
    """One provider. Subclasses implement the calls their `capabilities` name; others refuse clearly."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    needs_key: ClassVar[bool] = True

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def refuse(self, capability: Capability, model: str) -> InvalidRequest:
        what = {"chat": "text generation", "stream": "streaming", "embed": "embeddings",
                "transcribe": "speech to text", "vision": "image understanding"}.get(capability, capability)
        return InvalidRequest(f"model: {self.name}:{model} does not offer {what}", field="model")

    async def chat(self, call: ChatCall, key: str | None) -> ChatResult:
        raise self.refuse("chat", call.model)

    def stream(self, call: ChatCall, key: str | None) -> AsyncIterator[StreamDelta]:
        raise self.refuse("stream", call.model)

    async def embed(self, model: str, texts: list[str], dimensions: int | None, key: str | None) -> EmbeddingResult:
        raise self.refuse("embed", model)

    async def transcribe(self, call: TranscriptionCall, key: str | None) -> TranscriptionResult:
        raise self.refuse("transcribe", call.model)

    async def aclose(self) -> None:
        """Release connections and workers."""


def provider_metrics() -> ProviderHttpMetrics:
    """The toolkit's per-attempt metrics for the LLM adapters, on a registry of their own: the toolkit's
    series names can be registered once per registry, and another service registers them on the app's.
    The LLM service's own series (ionflux_llm_*, accounting.py) are on the app's registry."""
    return ProviderHttpMetrics(CollectorRegistry())


class HttpProvider:
    """A toolkit client for whole responses plus an httpx client for streams, both bound to one profile."""

    def __init__(self, profile: ProviderProfile, metrics: ProviderHttpMetrics,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.profile = profile
        self.client = ProviderClient(profile, limiter=None, transport=transport or LLMTransport())
        self.client.metrics = metrics
        t = profile.timeouts
        self._streams = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            headers=dict(profile.default_headers), transport=transport or LLMTransport(), follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self._streams.aclose()

    def auth_headers(self, key: str | None) -> dict[str, str]:
        if key is None:
            return {}
        return {self.profile.auth.header: self.profile.auth.header_value(key)}

    async def post_json(self, path: str, body: dict[str, Any], key: str | None, **kw: Any) -> Any:
        response = await self.client.request(
            "POST", path, content=orjson.dumps(body), headers={"content-type": "application/json"},
            credential=key, **kw,
        )
        return parse_json(self.profile.name, response)

    @contextlib.asynccontextmanager
    async def open_stream(self, path: str, body: dict[str, Any], key: str | None) -> AsyncIterator[httpx.Response]:
        """POST and yield a streaming 2xx response; every failure before that is an IonfluxError."""
        url = httpx.URL(self.profile.url(path, "default"))
        headers = {"content-type": "application/json", "accept": "text/event-stream", **self.auth_headers(key)}
        breaker = self.client.breakers.for_host(f"{url.host}:{url.port or ''}")
        breaker.before_call(self.profile.name)
        request = self._streams.build_request("POST", url, content=orjson.dumps(body), headers=headers)
        metrics = self.client.metrics
        try:
            response = await self._streams.send(request, stream=True)
        except httpx.TransportError as exc:
            breaker.record_failure()
            metrics.requests.labels(self.profile.name, "POST", "connection_error").inc()
            raise error_for_transport(self.profile.name, "POST", url, exc, 1) from None
        except BaseException:
            breaker.release_probe()
            raise
        metrics.requests.labels(self.profile.name, "POST", str(response.status_code)).inc()
        try:
            if response.status_code >= 400:
                (breaker.record_failure if response.status_code >= 500 else breaker.record_success)()
                await response.aread()
                raise error_for_response(
                    self.profile.name, response, secrets=secret_values(headers, [self.profile.auth.header]),
                    body_limit=self.profile.error_body_limit, attempts=1,
                    retry_after=_retry_after(response), throttled=response.status_code == 429,
                )
            breaker.record_success()
            yield response
        finally:
            await response.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    from ionflux.core.http import parse_retry_after

    return parse_retry_after(response.headers.get("retry-after"))


def parse_json(provider: str, response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ProviderApiError(f"{provider} answered with a body that is not JSON",
                               details={"provider": provider, "status": response.status_code}) from None


async def sse_events(provider: str, response: httpx.Response) -> AsyncIterator[tuple[str | None, str]]:
    """(event, data) pairs of a server-sent event stream.

    Written here (30 lines) rather than taking a dependency: only `event:` and `data:` matter to us.
    """
    event: str | None = None
    data: list[str] = []
    try:
        async for line in response.aiter_lines():
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
    except httpx.TransportError as exc:
        raise error_for_transport(provider, "POST", response.request.url, exc, 1) from None
    if data:
        yield event, "\n".join(data)


def stream_broken(provider: str, message: str, **details: Any) -> IonfluxError:
    """A stream that ended without its provider's end marker, or carried the provider's error event."""
    from ionflux.core.errors import ProviderUnavailable

    return ProviderUnavailable(f"{provider} {message}", details={"provider": provider, **details})
