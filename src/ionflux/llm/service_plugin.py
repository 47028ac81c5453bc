"""The LLM service as a platform `Service`: builds the adapters from settings and serves the routers.

Register: `SERVICES["llm"] = "ionflux.llm.service_plugin:LLMService"`. Other services use it through
`ionflux.llm.interface` (it is an `Embedder`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from fastapi import APIRouter
from starlette.routing import Route

from ionflux.core.service import Service, served_directly
from ionflux.llm.interface import DEFAULT_EMBEDDING_DIMENSION, DEFAULT_EMBEDDING_MODEL
from ionflux.llm.providers.anthropic import AnthropicAdapter
from ionflux.llm.providers.base import ProviderAdapter, provider_metrics
from ionflux.llm.providers.local import LocalAdapter
from ionflux.llm.providers.openai_compat import DeepSeekAdapter, OpenAICompatibleAdapter
from ionflux.llm.service import LLMOrchestrator
from ionflux.llm.settings import AnthropicSettings, DeepSeekSettings, LLMSettings, OpenAISettings

if TYPE_CHECKING:
    from ionflux.core.platform import Platform


class LLMService(Service):
    name: ClassVar[str] = "llm"
    embedding_model = DEFAULT_EMBEDDING_MODEL
    embedding_dimension = DEFAULT_EMBEDDING_DIMENSION

    def __init__(self, platform: Platform, *, settings: LLMSettings | None = None) -> None:
        super().__init__(platform)
        self.settings = settings or LLMSettings()
        self._routers: list[APIRouter] | None = None
        http_metrics = provider_metrics()
        adapters: dict[str, ProviderAdapter] = {
            "openai": OpenAICompatibleAdapter(OpenAISettings(), http_metrics),
            "anthropic": AnthropicAdapter(AnthropicSettings(), http_metrics),
            "deepseek": DeepSeekAdapter(DeepSeekSettings(), http_metrics),
            "local": LocalAdapter(self.settings),
        }
        self.orchestrator = LLMOrchestrator(self.settings, adapters, db=platform.db, vault=platform.vault,
                                            registry=platform.metrics.registry)

    def body_limits(self) -> dict[str, int]:
        # OpenAI's transcription limit is 25 MB of audio; the rest is multipart framing.
        return {"/v1/audio/transcriptions": 26 * 1024 * 1024}

    def routers(self) -> list[APIRouter]:
        from ionflux.llm.api import build_router
        from ionflux.llm.openai_api import build_openai_router

        if self._routers is None:
            self._routers = [build_router(self.orchestrator), build_openai_router(self.orchestrator)]
        return self._routers

    def hot_routes(self) -> list[Route]:
        # The per-call routes (they parse and authenticate the request themselves).
        return served_directly(self.routers(), "POST /v1/llm/requests", "POST /v1/chat/completions",
                               "POST /v1/embeddings")

    async def start(self) -> None:
        await self.orchestrator.start()

    async def stop(self) -> None:
        await self.orchestrator.stop()

    async def embed(self, workspace_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        return await self.orchestrator.embed(workspace_id, texts, model)
