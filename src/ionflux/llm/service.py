"""The LLM Orchestration Service's rules, free of HTTP: requests of the internal contract, the calls the
OpenAI-compatible surface makes, embeddings for other services, usage and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import case, func, select

from ionflux.core.db import Database
from ionflux.core.errors import ContentFiltered, InvalidRequest
from ionflux.core.observability import new_request_id
from ionflux.core.vault import Vault
from ionflux.llm.accounting import LLMMetrics, PriceTable, UsageRecorder, parse_since
from ionflux.llm.contract import LLMRequest, success
from ionflux.llm.gateway import Answer, CallContext, Gateway
from ionflux.llm.limits import LimitLedger, Limits
from ionflux.llm.media import MediaFetcher
from ionflux.llm.models import LLMLimits, LLMUsage
from ionflux.llm.providers.base import ProviderAdapter
from ionflux.llm.routing import ModelRef, ModelRouter
from ionflux.llm.settings import LLMSettings
from ionflux.llm.types import (
    ChatCall,
    ChatResult,
    EmbeddingResult,
    Image,
    Message,
    StreamDelta,
    TaskType,
    TranscriptionCall,
)

IMAGE_TOKEN_BOUND = 2000  # what one image may count as prompt tokens, for reservations
DEFAULT_VISION_PROMPT = "Describe this image."


def prompt_bound(texts: list[str], images: int = 0) -> int:
    """An upper bound on prompt tokens: byte-level BPE never makes more tokens than UTF-8 bytes, plus a
    message's few framing tokens; word-piece tokenizers add two per text."""
    return sum(len(t.encode()) + 8 for t in texts) + images * IMAGE_TOKEN_BOUND


class LLMOrchestrator:
    def __init__(self, settings: LLMSettings, adapters: dict[str, ProviderAdapter], *, db: Database, vault: Vault,
                 registry: CollectorRegistry, media: MediaFetcher | None = None) -> None:
        self.settings = settings
        self.db = db
        self.router = ModelRouter(settings)
        self.adapters = adapters
        self.prices = PriceTable(settings.prices)
        self.recorder = UsageRecorder(db, flush_seconds=settings.usage_flush_seconds)
        self.ledger = LimitLedger(self._load_limits, period=settings.budget_period)
        self.metrics = LLMMetrics(registry)
        self.gateway = Gateway(adapters, vault, self.prices, self.ledger, self.recorder, self.metrics)
        self.media = media or MediaFetcher(settings)

    async def start(self) -> None:
        await self.recorder.start()

    async def stop(self) -> None:
        await self.recorder.stop()
        await self.media.aclose()
        for adapter in self.adapters.values():
            await adapter.aclose()

    # -- the internal contract ----------------------------------------------------------------------
    async def handle(self, workspace_id: str, req: LLMRequest, request_id: str) -> dict[str, Any]:
        ctx = CallContext(workspace_id, request_id, req.task_type, req.user_id)
        ref = self.router.resolve(req.model, provider=req.provider, task=req.task_type)
        chain = self.router.chain(ref)
        task = req.task_type
        if task == "embedding":
            if req.text_to_embed is None:
                raise InvalidRequest("image_input_url: image embeddings (CLIP-style) are not offered by any "
                                     "configured provider; embed text, or use task_type image_understanding",
                                     field="image_input_url")
            texts = [req.text_to_embed] if isinstance(req.text_to_embed, str) else req.text_to_embed
            embedded, answer = await self.embed_texts(ctx, chain, texts, None)
            vectors: Any = embedded.vectors[0] if isinstance(req.text_to_embed, str) else embedded.vectors
            return success(request_id, task, id=f"emb-{request_id}", model_used=answer.ref.name, embedding=vectors,
                           prompt_tokens=embedded.usage.prompt_tokens)
        if task == "speech_to_text":
            assert req.audio_input_url is not None
            audio = await self.media.audio_file(req.audio_input_url)
            heard, answer = await self.gateway.transcribe(ctx, chain, TranscriptionCall(ref.model, audio,
                                                                                        prompt=req.prompt))
            return success(request_id, task, id=f"stt-{request_id}", model_used=answer.ref.name,
                           transcription=heard.text)
        images: tuple[Image, ...] = ()
        if task == "image_understanding":
            assert req.image_input_url is not None
            images = (await self.media.image(req.image_input_url),)
        call = self.contract_call(req, images)
        result, answer = await self.chat(ctx, chain, call)
        if result.finish_reason == "content_filter" and not result.text:
            raise ContentFiltered(f"{answer.ref.name} declined to answer: its content filter stopped the response",
                                  details={"provider": answer.ref.provider, "reason": "content_filter"})
        choices = [{"text": result.text, "finish_reason": result.finish_reason}]
        return success(request_id, task, id=result.id, model_used=answer.ref.name, choices=choices,
                       image_analysis_text=result.text if images else None,
                       prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens)

    def contract_call(self, req: LLMRequest, images: tuple[Image, ...]) -> ChatCall:
        systems = [h.content for h in req.history if h.role == "system"]
        if req.system_prompt:
            systems.insert(0, req.system_prompt)
        messages = [Message(h.role, h.content) for h in req.history if h.role != "system"]
        prompt = req.prompt or (DEFAULT_VISION_PROMPT if images else "")
        if prompt or images:
            messages.append(Message("user", prompt, images))
        params = req.parameters
        return ChatCall(model="", messages=tuple(messages), system="\n\n".join(systems) or None,
                        max_tokens=self.max_tokens(params.max_tokens, "parameters.max_tokens"),
                        temperature=params.temperature, top_p=params.top_p,
                        stop=tuple(params.stop_sequences or ()), user=req.user_id)

    def max_tokens(self, asked: int | None, field: str) -> int:
        if asked is None:
            return self.settings.default_max_tokens
        if asked > self.settings.max_max_tokens:
            raise InvalidRequest(f"{field}: at most {self.settings.max_max_tokens}", field=field)
        return asked

    # -- calls (also used by the OpenAI-compatible surface) -----------------------------------------
    def chain_for(self, model: str | None, task: TaskType = "text_generation") -> list[ModelRef]:
        return self.router.chain(self.router.resolve(model, task=task))

    @staticmethod
    def _bound(call: ChatCall) -> int:
        texts = [m.text for m in call.messages] + ([call.system] if call.system else [])
        return prompt_bound(texts, sum(len(m.images) for m in call.messages))

    async def chat(self, ctx: CallContext, chain: list[ModelRef], call: ChatCall) -> tuple[ChatResult, Answer]:
        vision = any(m.images for m in call.messages)
        return await self.gateway.chat(ctx, chain, call, capability="vision" if vision else "chat",
                                       prompt_bound=self._bound(call))

    async def stream(self, ctx: CallContext, chain: list[ModelRef],
                     call: ChatCall) -> tuple[AsyncIterator[StreamDelta], Answer]:
        vision = any(m.images for m in call.messages)
        return await self.gateway.stream(ctx, chain, call, capability="vision" if vision else "stream",
                                         prompt_bound=self._bound(call))

    async def embed_texts(self, ctx: CallContext, chain: list[ModelRef], texts: list[str],
                          dimensions: int | None) -> tuple[EmbeddingResult, Answer]:
        return await self.gateway.embed(ctx, chain, texts, dimensions, prompt_bound(texts) - 6 * len(texts))

    async def embed(self, workspace_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        """The `Embedder` interface other services use (see interface.py)."""
        if not texts:
            return []
        ctx = CallContext(workspace_id, new_request_id(), "embedding")
        result, _ = await self.embed_texts(ctx, self.chain_for(model, "embedding"), list(texts), None)
        return result.vectors

    # -- usage and limits ---------------------------------------------------------------------------
    async def usage(self, workspace_id: str, *, since: str | None, group_by: str) -> dict[str, Any]:
        if group_by not in ("model", "user"):
            raise InvalidRequest("group_by: expected model or user", field="group_by")
        start = parse_since(since, datetime.now(UTC) - timedelta(days=30))
        await self.recorder.flush()
        column = LLMUsage.model if group_by == "model" else LLMUsage.user_id
        errors = func.sum(case((LLMUsage.status == "error", 1), else_=0))
        query = (select(column, func.count(), errors, func.sum(LLMUsage.prompt_tokens),
                        func.sum(LLMUsage.completion_tokens), func.sum(LLMUsage.cost_usd))
                 .where(LLMUsage.created_at >= start).group_by(column).order_by(column))
        async with self.db.tenant(workspace_id) as session:
            rows = (await session.execute(query)).all()
        groups = [{group_by: key, "requests": int(n), "errors": int(err or 0), "prompt_tokens": int(p or 0),
                   "completion_tokens": int(c or 0), "total_tokens": int((p or 0) + (c or 0)),
                   "cost_usd": round(float(cost or 0.0), 8)} for key, n, err, p, c, cost in rows]
        totals = {k: sum(g[k] for g in groups) for k in ("requests", "errors", "prompt_tokens", "completion_tokens",
                                                         "total_tokens")}
        totals["cost_usd"] = round(sum(float(g["cost_usd"]) for g in groups), 8)
        return {"workspace_id": workspace_id, "since": start.isoformat(), "group_by": group_by, "groups": groups,
                "totals": totals}

    async def limits(self, workspace_id: str) -> dict[str, Any]:
        ledger = await self.ledger.ledger(workspace_id)
        limits = ledger.limits
        return {"workspace_id": workspace_id, "budget_usd": limits.budget_usd, "rpm": limits.rpm, "tpm": limits.tpm,
                "period": self.settings.budget_period, "period_start": ledger.period.isoformat(),
                "spent_usd": round(ledger.spent, 8), "reserved_usd": round(ledger.reserved, 8)}

    async def set_limits(self, workspace_id: str, *, budget_usd: float | None, rpm: int | None,
                         tpm: int | None) -> dict[str, Any]:
        async with self.db.tenant(workspace_id) as session:
            row = await session.get(LLMLimits, workspace_id)
            if row is None:
                row = LLMLimits(workspace_id=workspace_id)
                session.add(row)
            row.budget_usd, row.rpm, row.tpm = budget_usd, rpm, tpm
        self.ledger.set_limits(workspace_id, self._effective(budget_usd, rpm, tpm))
        return await self.limits(workspace_id)

    def _effective(self, budget: float | None, rpm: int | None, tpm: int | None) -> Limits:
        s = self.settings
        return Limits(budget_usd=budget if budget is not None else s.default_budget_usd,
                      rpm=rpm if rpm is not None else s.default_rpm, tpm=tpm if tpm is not None else s.default_tpm)

    async def _load_limits(self, workspace_id: str, start: datetime) -> tuple[Limits, float]:
        async with self.db.tenant(workspace_id) as session:
            row = await session.get(LLMLimits, workspace_id)
            spent = await session.scalar(select(func.sum(LLMUsage.cost_usd)).where(LLMUsage.created_at >= start))
        limits = self._effective(row.budget_usd, row.rpm, row.tpm) if row else self._effective(None, None, None)
        return limits, float(spent or 0.0)

