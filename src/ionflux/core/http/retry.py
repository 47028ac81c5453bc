"""When to retry and how long to wait: idempotency, full-jitter backoff, and Retry-After."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from ionflux.core.http.profile import RetryPolicy

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


def may_retry(method: str, headers: Mapping[str, str], policy: RetryPolicy, idempotent: bool | None) -> bool:
    """A request may be retried if its method is idempotent, the caller says so, or it has an idempotency key."""
    if idempotent is not None:
        return idempotent
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    wanted = policy.idempotency_header.lower()
    return any(name.lower() == wanted for name in headers)


def full_jitter(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """AWS's "full jitter": uniform(0, min(cap, base * 2**(attempt-1))) for the wait after attempt `attempt`."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(0, ceiling)  # jitter, not cryptography


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds (`1`, or fractional `2.0` as Shopify sends) or an
    HTTP-date. None if absent or unreadable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT; the parser leaves "-0000" naive
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds
