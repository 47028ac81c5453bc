"""An SES account's sending allowance (API_FACTS §4): GetAccount's `SendQuota` turned into a limiter.

SES counts per recipient: `MaxSendRate` recipients per second (a token bucket holding one second's worth) and
`Max24HourSend` per rolling 24 hours (`-1`: unlimited), of which `SentLast24Hours` are spent. The 24-hour
remainder is kept locally between reads (each accepted recipient spends one) and re-read from GetAccount
every `quota_refresh_seconds`, which also picks up a raised quota or a paused account.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ionflux.core.http.limiters import TokenBucketLimiter


@dataclass(frozen=True)
class SendQuota:
    max_send_rate: float
    max_24_hour_send: float  # -1: unlimited
    sent_last_24_hours: float = 0.0
    sending_enabled: bool = True
    source: str = "GetAccount"  # or "settings" when GetAccount could not be read

    @classmethod
    def from_get_account(cls, response: Mapping[str, Any]) -> SendQuota:
        quota = response.get("SendQuota") or {}
        return cls(max_send_rate=float(quota.get("MaxSendRate") or 1.0),
                   max_24_hour_send=float(quota.get("Max24HourSend", -1.0)),
                   sent_last_24_hours=float(quota.get("SentLast24Hours") or 0.0),
                   sending_enabled=bool(response.get("SendingEnabled", True)))


class AccountAllowance:
    """What one SES account (credential + region) may still send; shared by every concurrent send."""

    def __init__(self, quota: SendQuota, *, rate_override: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.read_at = clock()
        self.quota = quota
        self.rate = rate_override or quota.max_send_rate
        self.limiter = TokenBucketLimiter(capacity=max(1.0, self.rate), rate=self.rate, clock=clock)
        self.remaining = (math.inf if quota.max_24_hour_send < 0
                          else max(0.0, quota.max_24_hour_send - quota.sent_last_24_hours))

    @property
    def burst(self) -> int:
        """Most recipients one call may carry without outrunning the per-second rate."""
        return max(1, int(self.limiter.capacity))

    def age(self) -> float:
        return self._clock() - self.read_at

    def take_daily(self, recipients: int) -> bool:
        """Reserve `recipients` of the 24-hour quota; False (nothing reserved) if they do not fit."""
        if recipients > self.remaining:
            return False
        self.remaining -= recipients
        return True

    def give_back(self, recipients: int) -> None:
        """A call that certainly sent nothing returns its reservation."""
        self.remaining += recipients

    async def pace(self, recipients: int) -> None:
        """Wait until `recipients` fit the per-second rate (in slices no larger than the bucket)."""
        left = recipients
        while left > 0:
            piece = min(left, self.burst)
            await self.limiter.acquire("send", piece)
            self.limiter.settle("send", piece, None)
            left -= piece

    def pause(self, seconds: float) -> None:
        """SES said "too many requests": every caller of this account waits."""
        self.limiter.pause("send", seconds)
