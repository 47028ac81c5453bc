"""The Pinecone data-plane simulator speaks the wire protocol the official SDK expects, refuses what
Pinecone refuses, and our Pinecone backend maps its failures to our error codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from pinecone import AsyncIndex
from pinecone.errors.exceptions import ApiError, UnauthorizedError

from ionflux.core.errors import InvalidRequest, ProviderApiError, ProviderUnavailable
from ionflux.memory.backends.base import NamespaceRef, Upsert, as_floats
from ionflux.memory.backends.pinecone import MAX_REQUEST_BYTES, PineconeBackend, _chunks
from ionflux.sandbox.faults import Fault
from ionflux.sandbox.pinecone import PineconeIndexSimulator
from ionflux.sandbox.server import SimulatorServer

KEY = "pc-secret-key"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[PineconeIndexSimulator, SimulatorServer]]:
    index = PineconeIndexSimulator(dimension=4, metric="cosine", api_key=KEY)
    async with SimulatorServer(index.app, name="pinecone") as server:
        yield index, server


async def test_the_sdk_round_trips_through_the_simulator(sim: tuple[PineconeIndexSimulator, SimulatorServer]) -> None:
    index, server = sim
    async with AsyncIndex(host=server.base_url, api_key=KEY) as idx:
        up = await idx.upsert(vectors=[("a", [1, 0, 0, 0], {"genre": "drama", "year": 2020}),
                                       {"id": "b", "values": [0, 1, 0, 0], "metadata": {"tags": ["x", "y"]}}],
                              namespace="ns1")
        assert up.upserted_count == 2
        result = await idx.query(top_k=2, vector=[1, 0.1, 0, 0], namespace="ns1", include_metadata=True,
                                 filter={"year": {"$gte": 2020}})
        assert [(m.id, m.metadata) for m in result.matches] == [("a", {"genre": "drama", "year": 2020})]
        assert (await idx.query(top_k=1, id="b", namespace="ns1")).matches[0].id == "b"
        fetched = await idx.fetch(ids=["a", "zzz"], namespace="ns1")
        assert list(fetched.vectors) == ["a"] and fetched.vectors["a"].values == [1.0, 0.0, 0.0, 0.0]
        stats = await idx.describe_index_stats()
        assert (stats.dimension, stats.metric, stats.total_vector_count) == (4, "cosine", 2)
        assert stats.namespaces["ns1"].vector_count == 2
        assert (await idx.describe_namespace(name="ns1")).record_count == 2
        await idx.delete(filter={"tags": {"$in": ["y"]}}, namespace="ns1")
        await idx.delete(ids=["a"], namespace="ns1")
        assert (await idx.describe_index_stats()).total_vector_count == 0
    assert {r.headers.get("api-key") for r in server.requests} == {KEY}
    assert index.api_versions and all(len(v) == 7 for v in index.api_versions)


async def test_the_simulator_refuses_what_pinecone_refuses(sim: tuple[PineconeIndexSimulator, SimulatorServer]) -> None:
    _, server = sim
    async with AsyncIndex(host=server.base_url, api_key="wrong") as bad:
        with pytest.raises(UnauthorizedError):
            await bad.describe_index_stats()
    async with AsyncIndex(host=server.base_url, api_key=KEY) as idx:
        refused = [  # what the SDK lets through to the server
            lambda: idx.upsert(vectors=[("a", [1, 0, 0])], namespace="n"),  # dimension
            lambda: idx.upsert(vectors=[("a", [0, 0, 0, 0])], namespace="n"),  # no direction for cosine
            lambda: idx.query(top_k=1, vector=[1, 0, 0, 0], filter={"year": {"$regex": "x"}}),
            lambda: idx.query(top_k=1, vector=[1, 0, 0, 0], filter={"year": {"$gt": "2020"}}),
            lambda: idx.delete(ids=["a"], namespace="never-written"),  # 404
            lambda: idx.describe_index_stats(filter={"a": 1}),
        ]
        for call in refused:
            with pytest.raises(ApiError) as caught:
                await call()
            assert caught.value.status_code in (400, 404) and caught.value.message
    headers = {"Api-Key": KEY, "X-Pinecone-Api-Version": "2026-07"}
    raw_refused = [  # what the SDK already refuses itself; the server refuses it too
        ("/vectors/upsert", {"vectors": [{"id": f"v{i}", "values": [1, 0, 0, 0]} for i in range(1001)]}),
        ("/vectors/upsert", {"vectors": [{"id": "a", "values": [1, 0, 0, 0], "metadata": {"k": {"n": 1}}}]}),
        ("/vectors/upsert", {"vectors": [{"id": "a", "values": [1, 0, 0, 0], "metadata": {"k": None}}]}),
        ("/vectors/upsert", {"vectors": [{"id": "é", "values": [1, 0, 0, 0]}]}),
        ("/query", {"topK": 0, "vector": [1, 0, 0, 0]}),
        ("/query", {"topK": 1, "vector": [1, 0, 0, 0], "id": "a"}),
        ("/query", {"topK": 1, "vector": [1, 0, 0, 0], "includeScores": True}),  # unknown field
        ("/vectors/delete", {"ids": ["a"], "deleteAll": True, "namespace": "n"}),
    ]
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for path, body in raw_refused:
            response = await http.post(path, headers=headers, json=body)
            assert response.status_code == 400 and response.json()["code"] == 3, (path, response.text)
        raw = await http.post("/vectors/upsert", headers={"Api-Key": KEY},
                              json={"vectors": [{"id": "a", "values": [1, 0, 0, 0]}]})
        assert raw.status_code == 400 and "X-Pinecone-Api-Version" in raw.json()["message"]  # the SDK sends it


async def test_the_backend_maps_pinecone_failures(sim: tuple[PineconeIndexSimulator, SimulatorServer]) -> None:
    _, server = sim
    ref = NamespaceRef("ws", "notes", "ns_x", 4, "cosine")
    key = KEY

    async def api_key() -> str:
        return key

    backend = PineconeBackend(server.base_url, api_key, timeout=2)
    with pytest.raises(InvalidRequest) as wrong_shape:
        await backend.check_shape(8, "cosine")
    assert wrong_shape.value.field == "dimension"
    with pytest.raises(InvalidRequest) as wrong_metric:
        await backend.check_shape(4, "euclidean")
    assert wrong_metric.value.field == "metric"
    await backend.upsert(ref, [Upsert("a", np.asarray([1, 0, 0, 0], dtype=np.float32), {})])
    assert await backend.count(ref) == 1
    await backend.delete_ids(NamespaceRef("ws", "o", "ns_empty", 4, "cosine"), ["a"])  # 404 there: nothing to do

    key = "rotated-but-wrong"
    with pytest.raises(ProviderApiError) as refused:
        await backend.count(ref)
    assert "rotated" not in refused.value.message and KEY not in refused.value.message
    key = KEY
    server.faults.push(Fault.respond(503, body={"code": 14, "message": "unavailable"}, times=None))
    with pytest.raises((ProviderApiError, ProviderUnavailable)):
        await backend.count(ref)
    server.faults.clear()
    await backend.stop()


def test_upserts_are_split_under_pinecones_request_caps() -> None:
    rng = np.random.default_rng(0)
    for dim, text in ((1536, "x" * 2000), (384, ""), (4, "")):
        items = [Upsert(f"v{i}", -rng.random(dim, dtype=np.float32) / 7, {"text": text}) for i in range(1000)]
        chunks = _chunks(items)
        assert [u.id for c in chunks for u in c] == [u.id for u in items]
        for chunk in chunks:
            body = {"vectors": [{"id": u.id, "values": as_floats(u.values), "metadata": u.metadata} for u in chunk],
                    "namespace": "ns_" + "0" * 32}
            assert len(chunk) <= 1000 and len(json.dumps(body).encode()) <= MAX_REQUEST_BYTES
