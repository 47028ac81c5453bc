"""Prices, usage rows and LLM metrics.

Usage rows are written behind the request, in batches (one INSERT per workspace per flush): a provider call
answers without waiting for the database, and the budget ledger (`limits.py`) already holds the spending in
memory. The usage endpoint flushes before it reads; `stop()` flushes what is left. A process killed with
SIGKILL loses at most `usage_flush_seconds` of rows (never the provider's answer to the caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Table

from ionflux.core.bulk import RowWriter
from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest
from ionflux.core.models import utcnow
from ionflux.core.waiting import wake_or_timeout
from ionflux.llm.models import LLMUsage
from ionflux.llm.routing import ModelRef
from ionflux.llm.settings import Price
from ionflux.llm.types import Usage

log = logging.getLogger("ionflux.llm")
FREE = Price(input=0.0, output=0.0)


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = dict(prices)

    def price(self, ref: ModelRef) -> Price | None:
        if ref.provider == "local":
            return self.prices.get(ref.name, FREE)
        return self.prices.get(ref.name)

    def cost(self, ref: ModelRef, usage: Usage) -> float:
        price = self.price(ref)
        if price is None:
            return 0.0
        return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1_000_000

    def most(self, ref: ModelRef, prompt_bound: int, max_completion: int, *, budgeted: bool) -> float:
        """The most a call can cost. A budgeted workspace cannot use an unpriced model: its cost is unknown."""
        price = self.price(ref)
        if price is None:
            if budgeted:
                raise InvalidRequest(
                    f"model: {ref.name} has no price in IONFLUX_LLM_PRICES, and this workspace has a budget: "
                    "only priced models can be used against a budget", field="model")
            return 0.0
        return (prompt_bound * price.input + max_completion * price.output) / 1_000_000


class LLMMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("ionflux_llm_requests_total", "LLM requests by model that answered and outcome",
                                ["task", "model", "outcome"], registry=registry)
        self.tokens = Counter("ionflux_llm_tokens_total", "Tokens reported by providers", ["model", "kind"],
                              registry=registry)
        self.cost = Counter("ionflux_llm_cost_usd_total", "Cost in USD from the price table", ["model"],
                            registry=registry)
        self.fallbacks = Counter("ionflux_llm_fallbacks_total", "Calls that moved on to the next model",
                                 ["from_model", "reason"], registry=registry)
        self.latency = Histogram("ionflux_llm_request_seconds", "End-to-end LLM request latency", ["task"],
                                 registry=registry)
        self._series: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    def call(self, task: str, model: str, outcome: str, usage: Usage, cost: float, seconds: float,
             trace_id: str) -> None:
        """Count one finished call. The labelled series are looked up once per (task, model, outcome): a
        lookup through `labels()` costs more than the increments."""
        series = self._series.get((task, model, outcome))
        if series is None:
            if len(self._series) > 10_000:
                self._series.clear()
            series = self._series[(task, model, outcome)] = (
                self.requests.labels(task, model, outcome), self.tokens.labels(model, "prompt"),
                self.tokens.labels(model, "completion"), self.cost.labels(model), self.latency.labels(task))
        requests, prompt, completion, spent, latency = series
        requests.inc()
        if usage.prompt_tokens:
            prompt.inc(usage.prompt_tokens)
        if usage.completion_tokens:
            completion.inc(usage.completion_tokens)
        if cost:
            spent.inc(cost)
        latency.observe(seconds, exemplar={"trace_id": trace_id[:64]})


_COLUMNS = ("id", "request_id", "user_id", "task_type", "model", "status", "error_code", "prompt_tokens",
            "completion_tokens", "cost_usd", "latency_ms", "attempts", "key_source", "created_at")


class UsageRecorder:
    def __init__(self, db: Database, *, flush_seconds: float = 0.25) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self._pending: list[tuple[str, tuple[Any, ...]]] = []  # (workspace id, values in _COLUMNS order)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Row ids: a random prefix per recorder and a counter (unique across processes, no syscall per row).
        prefix = uuid.uuid4().hex[:20]
        self._ids = (f"{prefix}-{n}" for n in itertools.count())

    def record(self, workspace_id: str, *, request_id: str, user_id: str | None, task_type: str, model: str,
               status: str, usage: Usage, cost: float, latency_ms: float, attempts: int,
               key_source: str | None = None, error_code: str | None = None) -> None:
        self._pending.append((workspace_id, (
            next(self._ids), request_id, user_id, task_type, model, status, error_code, usage.prompt_tokens,
            usage.completion_tokens, cost, round(latency_ms, 3), attempts, key_source, utcnow())))
        if self._task is None:  # not started (tests driving the gateway alone): nothing writes behind
            return
        if len(self._pending) >= 500:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="llm-usage-writer")

    async def stop(self) -> None:
        """Let the writer finish its round (never cancel it mid-INSERT), then write what is left."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await task
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            await wake_or_timeout(self._wake, self.flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the database is away: keep the rows and try again next round
                log.exception("usage rows could not be written; retrying")

    async def flush(self) -> None:
        async with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return
            by_workspace: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            for workspace_id, values in rows:
                by_workspace[workspace_id].append(values)
            done: set[str] = set()
            try:
                for workspace_id, batch in by_workspace.items():
                    async with self.db.tenant(workspace_id) as session:
                        writer = RowWriter(session, cast(Table, LLMUsage.__table__), {"workspace_id": workspace_id},
                                           _COLUMNS, skip_existing=("id",))
                        for values in batch:
                            writer.add(values)
                        await writer.flush()
                    done.add(workspace_id)
            except BaseException:
                # Put them back; a batch whose commit did happen is skipped by its ids next time.
                self._pending[:0] = [r for r in rows if r[0] not in done]
                raise


def parse_since(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest("since: expected an ISO 8601 date or time, e.g. 2026-11-01T00:00:00Z",
                             field="since") from None
    if parsed.tzinfo is None:
        from datetime import UTC

        parsed = parsed.replace(tzinfo=UTC)
    return parsed
