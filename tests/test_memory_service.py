"""The memory service builds the backend the deployment's settings name, with the platform's key from
the vault; a namespace made on one backend is refused clearly by a deployment running another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ionflux.core.errors import ServiceUnavailable
from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.platform import Platform
from ionflux.memory.interface import UpsertItem
from ionflux.memory.service_plugin import MemoryService
from ionflux.memory.settings import MemorySettings
from ionflux.sandbox.pinecone import PineconeIndexSimulator
from ionflux.sandbox.server import SimulatorServer

from .memory_helpers import DIM, unit

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def _round_trip(service: MemoryService, workspace_id: str) -> None:
    await service.start()
    try:
        memory = service.for_workspace(workspace_id)
        await memory.create_namespace("notes", dimension=DIM)
        v = unit(np.random.default_rng(0))
        await memory.upsert("notes", [UpsertItem(id="a", values=v, metadata={"k": "v"})])
        assert [h.id for h in await memory.query("notes", vector=v, top_k=1)] == ["a"]
        assert (await memory.describe("notes")).backend == service.backend.name
    finally:
        await service.stop()


async def test_each_backend_is_chosen_by_settings(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = await platform.workspaces.create("svc")
    monkeypatch.setenv("IONFLUX_QDRANT_PATH", str(tmp_path / "qdrant"))
    qdrant = MemoryService(platform, MemorySettings(backend="qdrant"))
    await _round_trip(qdrant, ws.id)

    other = await platform.workspaces.create("svc2")
    sim = PineconeIndexSimulator(dimension=DIM, metric="cosine", api_key="platform-pc-key")
    async with SimulatorServer(sim.app, name="pinecone") as server:
        monkeypatch.setenv("IONFLUX_PINECONE_BASE_URL", server.base_url)
        pinecone = MemoryService(platform, MemorySettings(backend="pinecone"))
        with pytest.raises(ServiceUnavailable, match="IONFLUX_PINECONE_API_KEY"):
            await _round_trip(pinecone, other.id)
        await platform.vault.put(PLATFORM_WORKSPACE, "pinecone", {"api_key": "platform-pc-key"})
        await _round_trip(MemoryService(platform, MemorySettings(backend="pinecone")), other.id)
        assert {r.headers["api-key"] for r in server.requests} == {"platform-pc-key"}

    embedded = MemoryService(platform, MemorySettings(backend="embedded", directory=tmp_path / "emb"))
    await embedded.start()
    with pytest.raises(ServiceUnavailable) as wrong_backend:
        await embedded.for_workspace(ws.id).query("notes", vector=unit(np.random.default_rng(1)))
    assert "qdrant" in wrong_backend.value.message
    await embedded.stop()
