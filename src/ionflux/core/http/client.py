"""`ProviderClient`: the one way an adapter calls a provider over HTTP.

    client = ProviderClient(SHOPIFY_ADMIN_REST, registry=metrics.registry)
    response = await client.request("GET", "/admin/api/2026-07/shop.json", account=shop, credential=token)

A call waits for the (provider, account) rate limiter, passes the host's circuit breaker, and retries
connection errors, 429 and 5xx with full-jitter backoff or the server's Retry-After, within one total
deadline; only idempotent requests are retried (GET/HEAD/PUT/DELETE/OPTIONS, `idempotent=True`, or an
idempotency-key header), except that a connection that was never made is retried whatever the method.
What cannot succeed ends as an IonfluxError (see `failures.py`). Create one client per provider per process
and share it: the limiters and breakers it holds are what makes concurrent callers behave.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from types import TracebackType
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from ionflux.core.errors import IonfluxError
from ionflux.core.http.breaker import BreakerBoard, CircuitBreaker
from ionflux.core.http.failures import (
    error_for_response,
    error_for_transport,
    safe_path,
    secret_values,
    transport_reason,
)
from ionflux.core.http.limiters import RateLimiter, build_limiter
from ionflux.core.http.metrics import ProviderHttpMetrics
from ionflux.core.http.profile import ProviderProfile
from ionflux.core.http.retry import full_jitter, may_retry, parse_retry_after

logger = logging.getLogger("ionflux.http")

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_DEFAULT: Any = object()


class ProviderClient:
    def __init__(
        self,
        profile: ProviderProfile,
        *,
        registry: CollectorRegistry | None = None,
        limiter: RateLimiter | None = _DEFAULT,
        breakers: BreakerBoard | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.metrics = ProviderHttpMetrics.on(registry if registry is not None else CollectorRegistry())
        self.limiter: RateLimiter | None = build_limiter(profile.limiter) if limiter is _DEFAULT else limiter
        self.breakers = breakers or BreakerBoard(profile.breaker)
        self._rng = rng
        t = profile.timeouts
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            headers=dict(profile.default_headers),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        account: str = "default",
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        credential: str | None = None,
        idempotent: bool | None = None,
        cost: float | None = None,
        total_timeout: float | None = None,
    ) -> httpx.Response:
        """Send one logical request (retried as policy allows); return a response with status < 400 or raise.

        `total_timeout` overrides the profile's `timeouts.total` for this call."""
        method = method.upper()
        hdrs = dict(headers or {})
        if credential is not None:
            hdrs[self.profile.auth.header] = self.profile.auth.header_value(credential)
        call = _Call(
            method=method,
            url=httpx.URL(self.profile.url(path, account)),
            key=f"{self.profile.name}:{account}",
            cost=cost if cost is not None else self.profile.limiter.default_cost,
            retryable=may_retry(method, hdrs, self.profile.retry, idempotent),
            deadline=time.monotonic() + (total_timeout if total_timeout is not None else self.profile.timeouts.total),
            secrets=secret_values(hdrs, [self.profile.auth.header]),
            build=dict(params=params, json=json, content=content, data=data, headers=hdrs),
        )
        try:
            return await self._run(call)
        except IonfluxError as exc:
            self.metrics.errors.labels(self.profile.name, exc.code).inc()
            logger.warning(
                "provider call failed",
                extra={
                    "provider": self.profile.name,
                    "method": method,
                    "path": safe_path(call.url),
                    "code": exc.code,
                    "status": exc.details.get("status"),
                    "attempts": call.attempt,
                },
            )
            raise

    async def _run(self, call: _Call) -> httpx.Response:
        profile, policy = self.profile, self.profile.retry
        breaker = self.breakers.for_host(f"{call.url.host}:{call.url.port or ''}")
        while True:
            call.attempt += 1
            if call.deadline <= time.monotonic():
                raise error_for_transport(profile.name, call.method, call.url, TimeoutError(), call.attempt)
            self._gate(breaker)
            if self.limiter is not None:
                try:
                    await self.limiter.acquire(call.key, call.cost, deadline=call.deadline)
                except BaseException:
                    breaker.release_probe()  # a half-open probe that never went must not block the host
                    raise
            try:
                response = await self._send(call)
            except (httpx.TransportError, httpx.DecodingError, TimeoutError) as exc:
                self._settle(call, None)
                breaker.record_failure()
                self._observe_breaker(breaker)
                reason = transport_reason(exc)
                self.metrics.requests.labels(profile.name, call.method, reason).inc()
                if (call.retryable or isinstance(exc, _NEVER_SENT)) and await self._backoff(call, reason, None):
                    continue
                raise error_for_transport(profile.name, call.method, call.url, exc, call.attempt) from None
            except BaseException:
                self._settle(call, None)
                breaker.release_probe()
                raise

            throttle_wait = self._settle(call, response)
            status = response.status_code
            if status >= 500:
                breaker.record_failure()
            else:
                breaker.record_success()
            self._observe_breaker(breaker)
            throttled = status == 429 or throttle_wait is not None
            if not throttled and status < 400:
                return response
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if throttled and retry_after is None:
                retry_after = throttle_wait
            if throttled and self.limiter is not None and retry_after is not None:
                # Every caller of this account waits, not only this one.
                self.limiter.pause(call.key, min(retry_after, policy.retry_after_cap))
            if (throttled or status in policy.retry_statuses) and call.retryable:
                reason = "throttled" if throttled else f"status_{status}"
                if await self._backoff(call, reason, retry_after, paused=throttled and self.limiter is not None):
                    continue
            raise error_for_response(
                profile.name,
                response,
                secrets=call.secrets,
                body_limit=profile.error_body_limit,
                attempts=call.attempt,
                retry_after=retry_after,
                throttled=throttled,
            )

    def _gate(self, breaker: CircuitBreaker) -> None:
        try:
            breaker.before_call(self.profile.name)
        finally:
            self._observe_breaker(breaker)

    async def _send(self, call: _Call) -> httpx.Response:
        remaining = max(call.deadline - time.monotonic(), 0.001)
        t = self.profile.timeouts
        request = self._client.build_request(
            call.method,
            call.url,
            timeout=httpx.Timeout(
                connect=min(t.connect, remaining),
                read=min(t.read, remaining),
                write=min(t.write, remaining),
                pool=min(t.pool, remaining),
            ),
            **call.build,
        )
        started = time.monotonic()
        try:
            async with asyncio.timeout(remaining):
                response = await self._client.send(request)
        finally:
            self.metrics.latency.labels(self.profile.name).observe(time.monotonic() - started)
        self.metrics.requests.labels(self.profile.name, call.method, str(response.status_code)).inc()
        return response

    def _settle(self, call: _Call, response: httpx.Response | None) -> float | None:
        return self.limiter.settle(call.key, call.cost, response) if self.limiter is not None else None

    async def _backoff(self, call: _Call, reason: str, retry_after: float | None, *, paused: bool = False) -> bool:
        """Wait before the next attempt; False if there should be none (attempts, cap or deadline spent)."""
        policy = self.profile.retry
        if call.attempt >= policy.max_attempts:
            return False
        if retry_after is not None and retry_after > policy.retry_after_cap:
            return False
        delay = retry_after if retry_after is not None else full_jitter(call.attempt, policy, self._rng)
        if time.monotonic() + delay >= call.deadline:
            return False
        self.metrics.retries.labels(self.profile.name, reason).inc()
        logger.info(
            "retrying provider call",
            extra={
                "provider": self.profile.name,
                "method": call.method,
                "path": safe_path(call.url),
                "reason": reason,
                "attempt": call.attempt,
                "delay": round(delay, 3),
            },
        )
        if not paused:  # a paused limiter makes the next acquire() wait instead
            await asyncio.sleep(delay)
        return True

    def _observe_breaker(self, breaker: CircuitBreaker) -> None:
        self.metrics.circuit_state(self.profile.name, breaker.host, breaker.state)


class _Call:
    """The state of one logical request across its attempts."""

    __slots__ = ("attempt", "build", "cost", "deadline", "key", "method", "retryable", "secrets", "url")

    def __init__(
        self,
        *,
        method: str,
        url: httpx.URL,
        key: str,
        cost: float,
        retryable: bool,
        deadline: float,
        secrets: list[str],
        build: dict[str, Any],
    ) -> None:
        self.method = method
        self.url = url
        self.key = key
        self.cost = cost
        self.retryable = retryable
        self.deadline = deadline
        self.secrets = secrets
        self.build = build
        self.attempt = 0
