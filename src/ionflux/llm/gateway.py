"""The gateway: one call through limits, keys, the fallback chain, accounting.

    admit (RPM/TPM) → for each model of the chain: hold budget → resolve key → call → settle, or release
    and move on when the failure is a 429, a 5xx or a timeout (a stream moves on only before its first
    token: after that the caller gets an explicit error event, never a silent end).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ionflux.core.errors import AuthFailed, IonfluxError, NotFound, ProviderUnavailable, RateLimited
from ionflux.core.vault import Vault
from ionflux.llm.accounting import LLMMetrics, PriceTable, UsageRecorder
from ionflux.llm.limits import Admission, Hold, LimitLedger, WorkspaceLedger
from ionflux.llm.providers.base import ProviderAdapter
from ionflux.llm.routing import ModelRef
from ionflux.llm.types import (
    ChatCall,
    ChatResult,
    EmbeddingResult,
    StreamDelta,
    TaskType,
    TranscriptionCall,
    TranscriptionResult,
    Usage,
)

log = logging.getLogger("ionflux.llm")
T = TypeVar("T")
FALLBACK_ON = (RateLimited, ProviderUnavailable)


@dataclass(frozen=True)
class CallContext:
    workspace_id: str
    request_id: str
    task: TaskType
    user_id: str | None = None


@dataclass
class Attempt:
    ref: ModelRef
    adapter: ProviderAdapter
    key: str | None
    key_source: str | None
    hold: Hold


@dataclass(frozen=True)
class Answer:
    """What a call returned, and who answered it."""

    ref: ModelRef
    attempts: int


class Gateway:
    def __init__(self, adapters: dict[str, ProviderAdapter], vault: Vault, prices: PriceTable, ledger: LimitLedger,
                 recorder: UsageRecorder, metrics: LLMMetrics) -> None:
        self.adapters = adapters
        self.vault = vault
        self.prices = prices
        self.ledger = ledger
        self.recorder = recorder
        self.metrics = metrics

    # -- the plain calls ----------------------------------------------------------------------------
    async def chat(self, ctx: CallContext, chain: list[ModelRef], call: ChatCall, *, capability: str = "chat",
                   prompt_bound: int) -> tuple[ChatResult, Answer]:
        async def run(attempt: Attempt) -> tuple[ChatResult, Usage]:
            result = await attempt.adapter.chat(dataclasses.replace(call, model=attempt.ref.model), attempt.key)
            return result, result.usage
        return await self._run(ctx, chain, capability, prompt_bound, call.max_tokens, run)

    async def embed(self, ctx: CallContext, chain: list[ModelRef], texts: list[str], dimensions: int | None,
                    prompt_bound: int) -> tuple[EmbeddingResult, Answer]:
        async def run(attempt: Attempt) -> tuple[EmbeddingResult, Usage]:
            result = await attempt.adapter.embed(attempt.ref.model, texts, dimensions, attempt.key)
            return result, result.usage
        return await self._run(ctx, chain, "embed", prompt_bound, 0, run)

    async def transcribe(self, ctx: CallContext, chain: list[ModelRef],
                         call: TranscriptionCall) -> tuple[TranscriptionResult, Answer]:
        async def run(attempt: Attempt) -> tuple[TranscriptionResult, Usage]:
            result = await attempt.adapter.transcribe(dataclasses.replace(call, model=attempt.ref.model), attempt.key)
            return result, result.usage
        return await self._run(ctx, chain, "transcribe", 0, 0, run)

    async def _run(self, ctx: CallContext, chain: list[ModelRef], capability: str, prompt_bound: int,
                   max_completion: int, fn: Callable[[Attempt], Awaitable[tuple[T, Usage]]]) -> tuple[T, Answer]:
        started = time.perf_counter()
        admission = await self._admit(ctx, chain, capability, prompt_bound + max_completion)
        error: IonfluxError | None = None
        tried = 0
        last = chain[0]
        for ref in self._capable(chain, capability):
            tried += 1
            last = ref
            try:
                attempt = await self._attempt(ctx, admission.ledger, ref, prompt_bound, max_completion)
            except IonfluxError as exc:
                error = exc
                break
            try:
                result, usage = await fn(attempt)
            except IonfluxError as exc:
                attempt.hold.release()
                error = exc
                if isinstance(exc, FALLBACK_ON):
                    self.metrics.fallbacks.labels(ref.name, exc.code).inc()
                    continue
                break
            except BaseException:
                attempt.hold.release()
                admission.settle(0)
                raise
            self._settle(ctx, attempt, admission, usage, started, tried)
            return result, Answer(ref, tried)
        assert error is not None
        admission.settle(0)
        self._failed(ctx, last, error, started, tried)
        raise error

    # -- streams -------------------------------------------------------------------------------------
    async def stream(self, ctx: CallContext, chain: list[ModelRef], call: ChatCall, *, capability: str = "stream",
                     prompt_bound: int) -> tuple[AsyncIterator[StreamDelta], Answer]:
        """Open a stream on the first model that yields a first token; the iterator relays the rest."""
        started = time.perf_counter()
        admission = await self._admit(ctx, chain, capability, prompt_bound + call.max_tokens)
        error: IonfluxError | None = None
        tried = 0
        last = chain[0]
        for ref in self._capable(chain, capability):
            tried += 1
            last = ref
            try:
                attempt = await self._attempt(ctx, admission.ledger, ref, prompt_bound, call.max_tokens)
            except IonfluxError as exc:
                error = exc
                break
            deltas = attempt.adapter.stream(dataclasses.replace(call, model=ref.model), attempt.key)
            try:
                first = await anext(deltas)
            except StopAsyncIteration:
                error = ProviderUnavailable(f"{ref.provider} ended the stream before its first token",
                                            details={"provider": ref.provider, "reason": "empty_stream"})
            except IonfluxError as exc:
                error = exc
            except BaseException:
                attempt.hold.release()
                admission.settle(0)
                await _close(deltas)
                raise
            else:
                settlement = _Settlement(self, ctx, attempt, admission, prompt_bound, started, tried)
                relay = self._relay(settlement, first, deltas)
                # A response dropped before its body was read (the client left at once) still settles.
                weakref.finalize(relay, settlement.finish, "CLIENT_CLOSED")
                return relay, Answer(ref, tried)
            attempt.hold.release()
            await _close(deltas)
            if not isinstance(error, FALLBACK_ON):
                break
            self.metrics.fallbacks.labels(ref.name, error.code).inc()
        assert error is not None
        admission.settle(0)
        self._failed(ctx, last, error, started, tried)
        raise error

    async def _relay(self, settlement: _Settlement, first: StreamDelta,
                     deltas: AsyncIterator[StreamDelta]) -> AsyncIterator[StreamDelta]:
        failure: IonfluxError | None = None
        finished = False
        try:
            delta: StreamDelta | None = first
            while delta is not None:
                settlement.pieces += 1 if delta.text else 0
                settlement.usage = delta.usage or settlement.usage
                yield delta
                try:
                    delta = await anext(deltas)
                except StopAsyncIteration:
                    delta = None
            finished = True
        except IonfluxError as exc:
            failure = exc
            raise
        finally:
            await _close(deltas)
            settlement.finish(None if finished else failure.code if failure else "CLIENT_CLOSED")

    # -- steps ---------------------------------------------------------------------------------------
    async def _admit(self, ctx: CallContext, chain: list[ModelRef], capability: str, tokens: int) -> Admission:
        head = chain[0]
        adapter = self.adapters.get(head.provider)
        if adapter is None:
            raise ProviderUnavailable(f"provider {head.provider!r} is not configured in this deployment",
                                      details={"provider": head.provider})
        if not adapter.supports(capability):
            raise adapter.refuse(capability, head.model)
        ledger = await self.ledger.ledger(ctx.workspace_id)
        return self.ledger.admit(ledger, tokens)

    def _capable(self, chain: list[ModelRef], capability: str) -> list[ModelRef]:
        return [ref for ref in chain if (a := self.adapters.get(ref.provider)) is not None and a.supports(capability)]

    async def _attempt(self, ctx: CallContext, ledger: WorkspaceLedger, ref: ModelRef, prompt_bound: int,
                       max_completion: int) -> Attempt:
        budgeted = ledger.limits.budget_usd is not None
        hold = self.ledger.hold(ledger, self.prices.most(ref, prompt_bound, max_completion, budgeted=budgeted))
        adapter = self.adapters[ref.provider]
        if not adapter.needs_key:
            return Attempt(ref, adapter, None, None, hold)
        try:
            resolved = await self.vault.resolve(ctx.workspace_id, ref.provider)
            key = resolved.secrets["api_key"]
        except (NotFound, KeyError):
            hold.release()
            raise AuthFailed(f"no API key for {ref.provider}: set the platform's IONFLUX_{ref.provider.upper()}"
                             f"_API_KEY, or the workspace's own with PUT /v1/credentials/{ref.provider}",
                             details={"provider": ref.provider}) from None
        except BaseException:
            hold.release()
            raise
        return Attempt(ref, adapter, key, resolved.source, hold)

    def _settle(self, ctx: CallContext, attempt: Attempt, admission: Admission, usage: Usage, started: float,
                tried: int) -> None:
        cost = self.prices.cost(attempt.ref, usage)
        attempt.hold.settle(cost)
        admission.settle(usage.total_tokens)
        self._record(ctx, attempt.ref, "success", usage, cost, started, tried, attempt.key_source, None)

    def _failed(self, ctx: CallContext, ref: ModelRef, error: IonfluxError, started: float, tried: int) -> None:
        self._record(ctx, ref, "error", Usage(), 0.0, started, tried, None, error.code)

    def _record(self, ctx: CallContext, ref: ModelRef, status: str, usage: Usage, cost: float, started: float,
                tried: int, key_source: str | None, code: str | None) -> None:
        elapsed = time.perf_counter() - started
        name = ref.name
        self.recorder.record(ctx.workspace_id, request_id=ctx.request_id, user_id=ctx.user_id, task_type=ctx.task,
                             model=name, status=status, usage=usage, cost=cost, latency_ms=elapsed * 1000,
                             attempts=max(tried, 1), key_source=key_source, error_code=code)
        self.metrics.call(ctx.task, name, code or "success", usage, cost, elapsed, ctx.request_id)
        if code:
            log.info("llm call failed", extra={"model": name, "code": code, "attempts": tried,
                                               "workspace_id": ctx.workspace_id})


class _Settlement:
    """Settles one stream exactly once: at its end, on its failure, or when it is dropped unread. A stream cut
    short is still paid for: what the provider reported, else our bound on the prompt and a token a piece."""

    def __init__(self, gateway: Gateway, ctx: CallContext, attempt: Attempt, admission: Admission,
                 prompt_bound: int, started: float, tried: int) -> None:
        self.gateway, self.ctx, self.attempt, self.admission = gateway, ctx, attempt, admission
        self.prompt_bound, self.started, self.tried = prompt_bound, started, tried
        self.usage: Usage | None = None
        self.pieces = 0
        self.done = False

    def finish(self, code: str | None) -> None:
        if self.done:
            return
        self.done = True
        used = self.usage or Usage(self.prompt_bound, self.pieces)
        g, attempt = self.gateway, self.attempt
        if code is None:
            g._settle(self.ctx, attempt, self.admission, used, self.started, self.tried)
            return
        cost = g.prices.cost(attempt.ref, used)
        attempt.hold.settle(cost)
        self.admission.settle(used.total_tokens)
        g._record(self.ctx, attempt.ref, "error", used, cost, self.started, self.tried, attempt.key_source, code)


async def _close(iterator: AsyncIterator[StreamDelta]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # a generator that fails while closing has nothing more to tell us
            log.debug("stream close failed", exc_info=True)
