"""Per-workspace budgets and requests/tokens-per-minute limits, exact under concurrency.

A request reserves before it calls a provider and settles after: budgets reserve the most it can cost
(prompt bound + max_tokens at the model's price), the per-minute window reserves its token bound and one
request. The check-and-reserve runs without an await in between, so on the one event loop of the process
two concurrent requests can never both take the last of a budget: a budget is never exceeded, and a
minute's tokens only by what providers report beyond our bound. The ledger lives in this process (the
LLM service runs in one process; see the service notes), seeded from the usage table on first use.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ionflux.core.errors import QuotaExceeded, RateLimited

WINDOW = 60.0


@dataclass(frozen=True)
class Limits:
    budget_usd: float | None = None
    rpm: int = 0  # 0: unlimited
    tpm: int = 0


def period_start(now: datetime, period: str) -> datetime:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_end(start: datetime, period: str) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


@dataclass
class _Entry:
    at: float
    tokens: int
    live: bool = True  # False once it has left the window


@dataclass
class WorkspaceLedger:
    limits: Limits
    period: datetime
    spent: float = 0.0
    reserved: float = 0.0
    window: deque[_Entry] = field(default_factory=deque)
    window_tokens: int = 0

    def _expire(self, now: float) -> None:
        while self.window and self.window[0].at <= now - WINDOW:
            gone = self.window.popleft()
            gone.live = False
            self.window_tokens -= gone.tokens


@dataclass
class Admission:
    """One admitted request's place in the per-minute window; `settle` replaces its token bound."""

    ledger: WorkspaceLedger
    entry: _Entry | None

    def settle(self, tokens: int) -> None:
        if self.entry is not None and self.entry.live:
            self.ledger.window_tokens += tokens - self.entry.tokens
            self.entry.tokens = tokens
        self.entry = None


@dataclass
class Hold:
    """Budget reserved for one provider call; `settle(cost)` spends, `release()` gives it back."""

    ledger: WorkspaceLedger
    amount: float
    open: bool = True

    def settle(self, cost: float) -> None:
        if self.open:
            self.ledger.reserved -= self.amount
            self.ledger.spent += cost
            self.open = False

    def release(self) -> None:
        self.settle(0.0)


LimitsLoader = Callable[[str, datetime], Awaitable[tuple[Limits, float]]]


class LimitLedger:
    """The process's ledger of every workspace's spending and per-minute use."""

    def __init__(self, loader: LimitsLoader, *, period: str = "month",
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._loader = loader  # (workspace, period start) -> (limits, spent so far in the period)
        self._period = period
        self.clock = clock  # injectable: the per-minute window's time
        self.wall = wall  # injectable: the budget period's time (Unix seconds)
        self._ledgers: dict[str, WorkspaceLedger] = {}
        self._span = (0.0, 0.0, datetime.fromtimestamp(0, UTC))  # the current period: [from, to) and its start

    def period(self) -> datetime:
        """The current period's start, worked out again only when the wall clock leaves the period."""
        now = self.wall()
        begins, ends, start = self._span
        if not begins <= now < ends:
            start = period_start(datetime.fromtimestamp(now, UTC), self._period)
            self._span = (start.timestamp(), period_end(start, self._period).timestamp(), start)
        return start

    async def ledger(self, workspace_id: str) -> WorkspaceLedger:
        ledger = self._ledgers.get(workspace_id)
        start = self.period()
        if ledger is None:
            limits, spent = await self._loader(workspace_id, start)
            ledger = self._ledgers.get(workspace_id)  # another request may have loaded it meanwhile
            if ledger is None:
                ledger = self._ledgers[workspace_id] = WorkspaceLedger(limits, start, spent=spent)
        if ledger.period != start:  # a new period: spending starts again (reservations carry on)
            ledger.period, ledger.spent = start, 0.0
        return ledger

    def set_limits(self, workspace_id: str, limits: Limits) -> None:
        ledger = self._ledgers.get(workspace_id)
        if ledger is not None:
            ledger.limits = limits

    def forget(self, workspace_id: str) -> None:
        self._ledgers.pop(workspace_id, None)

    def admit(self, ledger: WorkspaceLedger, token_bound: int) -> Admission:
        """Count one request and reserve its token bound in the minute window, or raise RATE_LIMITED."""
        limits = ledger.limits
        if not limits.rpm and not limits.tpm:
            return Admission(ledger, None)
        now = self.clock()
        ledger._expire(now)
        if limits.rpm and len(ledger.window) + 1 > limits.rpm:
            raise self._limited(ledger, now, f"{limits.rpm} requests per minute", "rpm")
        if limits.tpm and token_bound > limits.tpm:
            raise RateLimited(f"this request may use {token_bound} tokens, more than the workspace's limit of "
                              f"{limits.tpm} tokens per minute: lower max_tokens or shorten the input",
                              field="parameters.max_tokens", details={"limit": "tpm"})
        if limits.tpm and ledger.window_tokens + token_bound > limits.tpm:
            raise self._limited(ledger, now, f"{limits.tpm} tokens per minute", "tpm")
        entry = _Entry(now, token_bound)
        ledger.window.append(entry)
        ledger.window_tokens += token_bound
        return Admission(ledger, entry)

    def hold(self, ledger: WorkspaceLedger, amount: float) -> Hold:
        budget = ledger.limits.budget_usd
        if budget is not None and ledger.spent + ledger.reserved + amount > budget + 1e-12:
            left = max(0.0, budget - ledger.spent - ledger.reserved)
            raise QuotaExceeded(
                f"the workspace's LLM budget of ${budget:.4f} per {self._period} would be exceeded: this request "
                f"may cost up to ${amount:.6f} and ${left:.6f} is left", details={
                    "budget_usd": budget, "spent_usd": round(ledger.spent, 8),
                    "reserved_usd": round(ledger.reserved, 8), "request_max_usd": round(amount, 8)})
        ledger.reserved += amount
        return Hold(ledger, amount)

    def _limited(self, ledger: WorkspaceLedger, now: float, what: str, which: str) -> RateLimited:
        retry_after = max(0.0, ledger.window[0].at + WINDOW - now) if ledger.window else WINDOW
        return RateLimited(f"the workspace's limit of {what} is reached; retry in {retry_after:.1f} s",
                           details={"limit": which, "retry_after": round(retry_after, 3)})
