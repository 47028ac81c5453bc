"""Provider HTTP toolkit: timeouts, retries, rate limits, circuit breakers and error mapping over httpx."""

from ionflux.core.http.breaker import BreakerBoard, CircuitBreaker
from ionflux.core.http.client import ProviderClient
from ionflux.core.http.limiters import (
    BucketLimiter,
    CostLimiter,
    LeakyBucketLimiter,
    RateLimiter,
    TokenBucketLimiter,
    build_limiter,
)
from ionflux.core.http.metrics import ProviderHttpMetrics
from ionflux.core.http.profile import AuthStyle, BreakerSpec, LimiterSpec, ProviderProfile, RetryPolicy, Timeouts
from ionflux.core.http.retry import parse_retry_after

__all__ = [
    "AuthStyle",
    "BreakerBoard",
    "BreakerSpec",
    "BucketLimiter",
    "CircuitBreaker",
    "CostLimiter",
    "LeakyBucketLimiter",
    "LimiterSpec",
    "ProviderClient",
    "ProviderHttpMetrics",
    "ProviderProfile",
    "RateLimiter",
    "RetryPolicy",
    "Timeouts",
    "TokenBucketLimiter",
    "build_limiter",
    "parse_retry_after",
]
