"""What differs between providers, as data (Nango's catalogue idea): URLs, timeouts, retries, limits, auth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LimiterKind = Literal["none", "leaky_bucket", "token_bucket", "cost"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `total` bounds one `request()` call end to end: limiter waits, every attempt and every backoff."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0
    total: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # attempts in all, the first included
    backoff_base: float = 0.25  # full jitter: sleep uniform(0, min(backoff_cap, backoff_base * 2**(attempt-1)))
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0  # a longer Retry-After is not slept: the RateLimited error carries it instead
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    idempotency_header: str = "Idempotency-Key"  # its presence marks a non-idempotent request safe to retry


@dataclass(frozen=True)
class LimiterSpec:
    """A client-side rate limiter shared by every caller of one (provider, account) key.

    leaky_bucket: `capacity` requests fill the bucket, which drains `rate` per second (Shopify REST).
    token_bucket: `capacity` is the burst, `rate` tokens per second refill it (WhatsApp messages per second).
    cost: the bucket holds `capacity` points restored at `rate` per second; each call spends its `cost`
          (Shopify GraphQL), and the server's own report of the bucket replaces the estimate.
    """

    kind: LimiterKind = "none"
    capacity: float = 0.0
    rate: float = 0.0
    default_cost: float = 1.0
    # "used/size" header the server reports after each call, e.g. X-Shopify-Shop-Api-Call-Limit.
    feedback_header: str | None = None


@dataclass(frozen=True)
class BreakerSpec:
    """Per host: open after `failure_threshold` consecutive failures, probe again after `cool_down` seconds."""

    enabled: bool = True
    failure_threshold: int = 5
    cool_down: float = 30.0


@dataclass(frozen=True)
class AuthStyle:
    """How a credential travels: `Authorization: Bearer <token>`, `X-Shopify-Access-Token: <token>`, …"""

    header: str = "Authorization"
    scheme: str | None = "Bearer"

    def header_value(self, credential: str) -> str:
        return f"{self.scheme} {credential}" if self.scheme else credential


@dataclass(frozen=True)
class ProviderProfile:
    """Everything the HTTP toolkit needs to know about one provider.

    `base_url` may hold `{account}` (alias `{shop}`, as in IONFLUX_SHOPIFY_BASE_URL), filled per call.
    """

    name: str
    base_url: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: LimiterSpec = field(default_factory=LimiterSpec)
    breaker: BreakerSpec = field(default_factory=BreakerSpec)
    auth: AuthStyle = field(default_factory=AuthStyle)
    default_headers: tuple[tuple[str, str], ...] = ()
    error_body_limit: int = 2000  # characters of the provider's error body kept (redacted) on an error

    def url(self, path: str, account: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        base = self.base_url.replace("{account}", account).replace("{shop}", account).rstrip("/")
        return f"{base}/{path.lstrip('/')}"
