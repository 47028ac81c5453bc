"""Embedded memory survives a server restart and a SIGKILL in the middle of upserts: every acknowledged
vector is there afterwards and findable through the (caught-up or rebuilt) HNSW index."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ionflux.core.db import Database
from ionflux.core.workspaces import WorkspaceDirectory

from .memory_helpers import DIM
from .server import ServerProcess

NS = "/v1/memory/namespaces/kill"


class MemoryServer(ServerProcess):
    """`ionflux serve --only memory`: the same server, without importing the other services (start-up time)."""

    def start(self, timeout: float = 30.0) -> float:
        popen = subprocess.Popen

        def only_memory(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
            return popen([*args, "--only", "memory"], **kwargs)

        subprocess.Popen = only_memory  # type: ignore[assignment,misc]
        try:
            return super().start(timeout)
        finally:
            subprocess.Popen = popen  # type: ignore[misc]


def _vector(n: int) -> list[float]:
    v = np.random.default_rng(n).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


async def _server(tmp_path: Path) -> tuple[ServerProcess, dict[str, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ionflux.db'}"
    db = Database(url)
    db.upgrade()
    created = await WorkspaceDirectory(db).create("kill")
    await db.dispose()
    env = {"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": url, "IONFLUX_BUS_URL": "embedded://",
           "IONFLUX_LOG_LEVEL": "WARNING", "IONFLUX_MEMORY_EXACT_THRESHOLD": "100",
           "IONFLUX_MEMORY_SNAPSHOT_SECONDS": "3600"}
    return MemoryServer(env, tmp_path), {"Authorization": f"Bearer {created.token}"}


def _assert_all_there(server: ServerProcess, headers: dict[str, str], ids: list[int]) -> None:
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunk = [f"v{n}" for n in ids[start:start + 1000]]
            found.update(v["id"] for v in http.post(f"{NS}/fetch", json={"ids": chunk}).json()["vectors"])
        missing = [n for n in ids if f"v{n}" not in found]
        assert not missing, f"{len(missing)} acknowledged vectors are gone, e.g. {missing[:5]}"
        assert http.get(NS).json()["count"] >= len(ids)
        for n in ids[:: max(1, len(ids) // 40)]:
            hits = http.post(f"{NS}/query", json={"vector": _vector(n), "top_k": 1}).json()["matches"]
            assert hits[0]["id"] == f"v{n}", (n, hits)


def _upsert_until_killed(url: str, headers: dict[str, str], acked: list[int], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
        for batch in range(30, 100_000):  # ids from 300 on
            if stop.is_set():
                return
            ids = list(range(batch * 10, batch * 10 + 10))
            body = {"vectors": [{"id": f"v{n}", "values": _vector(n), "metadata": {"batch": batch}} for n in ids]}
            try:
                response = http.put(f"{NS}/vectors", json=body)
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 200:
                acked.extend(ids)


async def test_memory_survives_a_restart_and_a_sigkill_during_upserts(tmp_path: Path) -> None:
    server, headers = await _server(tmp_path)
    try:
        server.start()
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            assert http.post("/v1/memory/namespaces", json={"name": "kill", "dimension": DIM}).status_code == 201
            for start in range(0, 300, 100):
                body = {"vectors": [{"id": f"v{n}", "values": _vector(n)} for n in range(start, start + 100)]}
                assert http.put(f"{NS}/vectors", json=body).status_code == 200
            assert http.post(f"{NS}/delete", json={"ids": ["v0", "v1"]}).status_code == 200
        server.stop()  # a clean stop saves the HNSW graph
        assert list((tmp_path / "data" / "memory").glob("*.usearch"))
        server.start()
        _assert_all_there(server, headers, list(range(2, 300)))
        with httpx.Client(base_url=server.url, headers=headers) as http:
            assert http.post(f"{NS}/fetch", json={"ids": ["v0", "v1"]}).json()["vectors"] == []

        acked: list[int] = []
        stop = threading.Event()
        writer = threading.Thread(target=_upsert_until_killed, args=(server.url, headers, acked, stop))
        writer.start()
        deadline = time.monotonic() + 60
        while len(acked) < 300 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL while upserts stream in; the graph on disk is behind the database
        stop.set()
        writer.join(timeout=10)
        assert len(acked) >= 300, f"only {len(acked)} vectors were acknowledged before the kill"

        server.start()
        _assert_all_there(server, headers, list(range(2, 300)) + sorted(acked))
    finally:
        server.stop()
