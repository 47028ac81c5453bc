"""The memory service as the platform runs it: backend chosen by `IONFLUX_MEMORY_BACKEND`.

Public interface for other services: `platform.services["memory"].for_workspace(ws)` -> `VectorMemory`
(see `ionflux.memory.interface`), and `ionflux.memory.templates.resolve_namespace_template`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter

from ionflux.core.errors import NotFound, ServiceUnavailable
from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.platform import Platform
from ionflux.core.service import Service
from ionflux.memory.api import memory_router
from ionflux.memory.backends.base import VectorBackend
from ionflux.memory.metrics import MemoryMetrics
from ionflux.memory.service import MemoryStore, WorkspaceMemory
from ionflux.memory.settings import MemorySettings, PineconeSettings, QdrantSettings


class MemoryService(Service):
    name = "memory"

    def __init__(self, platform: Platform, settings: MemorySettings | None = None,
                 backend: VectorBackend | None = None) -> None:
        super().__init__(platform)
        self.settings = settings or MemorySettings()
        self.backend = backend or build_backend(platform, self.settings)
        self.store = MemoryStore(platform, self.backend, default_dimension=self.settings.default_dimension,
                                 metrics=MemoryMetrics.for_registry(platform.metrics.registry))

    def for_workspace(self, workspace_id: str) -> WorkspaceMemory:
        return self.store.for_workspace(workspace_id)

    def routers(self) -> list[APIRouter]:
        return [memory_router(self.store)]

    def body_limits(self) -> dict[str, int]:
        # An upsert of 1,000 items of up to 3,072 dimensions as JSON floats; other routes are small anyway.
        return {"/v1/memory/namespaces/": 64 * 1024 * 1024}

    async def start(self) -> None:
        await self.backend.start()

    async def stop(self) -> None:
        await self.backend.stop()


def build_backend(platform: Platform, settings: MemorySettings) -> VectorBackend:
    data_dir = platform.settings.data_dir
    if settings.backend == "qdrant":
        from qdrant_client import AsyncQdrantClient

        from ionflux.memory.backends.qdrant import QdrantBackend

        qdrant = QdrantSettings()

        async def connect() -> AsyncQdrantClient:
            if not qdrant.base_url:
                return AsyncQdrantClient(path=qdrant.path or str(data_dir / "qdrant"))
            try:  # read once at start: a rotated Qdrant key needs a restart
                key: str | None = (await platform.vault.get(PLATFORM_WORKSPACE, "qdrant")).reveal("api_key")
            except NotFound:
                key = None
            return AsyncQdrantClient(url=qdrant.base_url, api_key=key, timeout=qdrant.timeout)

        return QdrantBackend(connect, prefix=qdrant.collection_prefix)
    if settings.backend == "pinecone":
        from ionflux.memory.backends.pinecone import PineconeBackend

        pinecone = PineconeSettings()
        if not pinecone.base_url:
            raise ServiceUnavailable("IONFLUX_PINECONE_BASE_URL (the index host) is required for the pinecone backend")
        return PineconeBackend(pinecone.base_url, _platform_key(platform, "pinecone"), timeout=pinecone.timeout)
    from ionflux.memory.backends.embedded.backend import EmbeddedBackend
    from ionflux.memory.backends.embedded.engine import GraphParams

    params = GraphParams(dtype=settings.hnsw_dtype, connectivity=settings.hnsw_connectivity,
                         expansion_add=settings.hnsw_expansion_add, expansion_search=settings.hnsw_expansion_search)
    return EmbeddedBackend(platform.db, settings.directory or data_dir / "memory",
                           exact_threshold=settings.exact_threshold, snapshot_seconds=settings.snapshot_seconds,
                           idle_seconds=settings.idle_seconds, params=params)


def _platform_key(platform: Platform, provider: str) -> Callable[[], Awaitable[str]]:
    async def api_key() -> str:
        try:
            bundle = await platform.vault.get(PLATFORM_WORKSPACE, provider)
        except NotFound:
            raise ServiceUnavailable(f"no platform API key for {provider}: set IONFLUX_{provider.upper()}_API_KEY",
                                     field="backend") from None
        return bundle.reveal("api_key")

    return api_key
