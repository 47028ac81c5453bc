"""The HTTP transport under the LLM adapters' toolkit clients: aiohttp, through httpx-aiohttp.

Why: LLM calls are many and long, and httpx's own connection pool costs CPU that grows with the calls in
flight (measured here: 0.9 ms per call alone, 2.0 ms with 50 in flight; through aiohttp 0.5 and 0.4 ms).
The toolkit stays in charge above the transport (timeouts, retries, breaker, error mapping); this class
only corrects one error mapping: httpx-aiohttp reports a server that dropped the connection after the
request was sent as a connect timeout, which the toolkit would take for "never sent" and retry — for a
chat completion that may already be paid for. Here it is a read error, which a POST does not retry.
(aiohttp takes no proxy from the environment, unlike httpx.)
"""

from __future__ import annotations

import functools
import ssl

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

_SENT_THEN_DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every LLM transport of the process (each costs tens of ms to build)."""
    return httpx.create_ssl_context()


class LLMTransport(AiohttpTransport):
    def __init__(self) -> None:
        super().__init__(verify=_tls(), limits=httpx.Limits(max_connections=1000, max_keepalive_connections=256))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            cause = exc.__cause__
            if isinstance(cause, _SENT_THEN_DROPPED) or (
                    isinstance(cause, aiohttp.ClientOSError) and not isinstance(cause, aiohttp.ClientConnectorError)):
                raise httpx.ReadError(str(cause) or type(cause).__name__, request=request) from cause
            raise
