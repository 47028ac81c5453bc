"""One conformance suite, run against every vector backend: embedded (exact, and HNSW forced on small
data), Qdrant (qdrant-client local mode) and Pinecone (official SDK against the data-plane simulator).

Expected results are written out by hand (not computed by our own filter evaluator), so each backend is
checked against the documented semantics rather than against another implementation of ours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from ionflux.core.errors import InvalidRequest, NotFound
from ionflux.core.platform import Platform
from ionflux.memory.backends.base import VectorBackend
from ionflux.memory.backends.embedded.backend import EmbeddedBackend
from ionflux.memory.backends.pinecone import PineconeBackend
from ionflux.memory.backends.qdrant import QdrantBackend
from ionflux.memory.interface import UpsertItem
from ionflux.memory.service import MemoryStore, WorkspaceMemory
from ionflux.sandbox.pinecone import PineconeIndexSimulator
from ionflux.sandbox.server import SimulatorServer

from .memory_helpers import DIM, HashEmbedder, unit

BACKENDS = ["embedded-exact", "embedded-hnsw", "qdrant", "pinecone"]
# The backends' behaviour does not depend on the registry's database; the embedded store's SQL runs on
# PostgreSQL too in test_memory_embedded.py.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Opener = Callable[..., Awaitable[tuple[WorkspaceMemory, WorkspaceMemory]]]


@pytest.fixture(params=BACKENDS)
async def open_memory(request: pytest.FixtureRequest, platform: Platform, tmp_path: Path) -> AsyncIterator[Opener]:
    """`await open_memory(metric=...)` -> (memory of workspace A, memory of workspace B) on one backend."""
    kind: str = request.param
    platform.services["llm"] = HashEmbedder()  # type: ignore[assignment]
    started: list[Any] = []

    async def open_(metric: str = "cosine", dimension: int = DIM) -> tuple[WorkspaceMemory, WorkspaceMemory]:
        backend: VectorBackend
        if kind.startswith("embedded"):
            backend = EmbeddedBackend(platform.db, tmp_path / f"mem-{len(started)}",
                                      exact_threshold=0 if kind == "embedded-hnsw" else 20_000)
        elif kind == "qdrant":
            async def connect() -> AsyncQdrantClient:
                return AsyncQdrantClient(location=":memory:")
            backend = QdrantBackend(connect)
        else:
            sim = PineconeIndexSimulator(dimension=dimension, metric=metric, api_key="pc-key")
            server = await SimulatorServer(sim.app, name="pinecone").start_async()
            started.append(server)

            async def key() -> str:
                return "pc-key"
            backend = PineconeBackend(server.base_url, key)
        await backend.start()
        started.append(backend)
        store = MemoryStore(platform, backend, default_dimension=dimension)
        a = await platform.workspaces.create("a")
        b = await platform.workspaces.create("b")
        memory_a, memory_b = store.for_workspace(a.id), store.for_workspace(b.id)
        await memory_a.create_namespace("notes", dimension=dimension, metric=metric)  # type: ignore[arg-type]
        await memory_b.create_namespace("notes", dimension=dimension, metric=metric)  # type: ignore[arg-type]
        return memory_a, memory_b

    yield open_
    for thing in reversed(started):
        await (thing.stop_async() if isinstance(thing, SimulatorServer) else thing.stop())


RECORDS: dict[str, dict[str, Any]] = {
    "a": {"genre": "drama", "year": 2019, "rating": 4.5, "tags": ["x", "y"], "draft": False},
    "b": {"genre": "comedy", "year": 2020, "rating": 3.0, "tags": ["y"], "draft": True},
    "c": {"genre": "drama", "year": 2021, "rating": 2.0, "draft": False},
    "d": {"genre": "horror", "year": 2022, "tags": ["z"]},
    "e": {"year": 2020.0, "rating": 5, "tags": ["x"], "draft": True},
    "f": {"genre": "5", "year": 2023},
}

FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    ({"genre": "drama"}, {"a", "c"}),
    ({"genre": {"$eq": "drama"}}, {"a", "c"}),
    ({"genre": {"$ne": "drama"}}, {"b", "d", "f"}),  # e has no genre: $ne needs the field
    ({"year": {"$gt": 2020}}, {"c", "d", "f"}),
    ({"year": {"$gte": 2020}}, {"b", "c", "d", "e", "f"}),
    ({"year": {"$lt": 2020}}, {"a"}),
    ({"year": {"$lte": 2020}}, {"a", "b", "e"}),
    ({"year": 2020}, {"b", "e"}),  # 2020 == 2020.0
    ({"year": {"$in": [2019, 2023]}}, {"a", "f"}),
    ({"genre": {"$in": ["comedy", "horror"]}}, {"b", "d"}),
    ({"genre": {"$nin": ["comedy", "horror"]}}, {"a", "c", "f"}),
    ({"tags": "y"}, {"a", "b"}),  # a list field matches when an element does
    ({"tags": {"$in": ["z", "x"]}}, {"a", "d", "e"}),
    ({"tags": {"$nin": ["x"]}}, {"b", "d"}),
    ({"tags": {"$ne": "y"}}, {"d", "e"}),
    ({"draft": True}, {"b", "e"}),
    ({"draft": {"$ne": True}}, {"a", "c"}),
    ({"draft": 1}, set()),  # booleans are not numbers
    ({"genre": 5}, set()),  # the string "5" is not the number 5
    ({"genre": "5"}, {"f"}),
    ({"rating": {"$gt": 4}}, {"a", "e"}),
    ({"genre": "drama", "rating": {"$gte": 2.0, "$lt": 4.0}}, {"c"}),
    ({"$or": [{"genre": "comedy"}, {"year": {"$gte": 2022}}]}, {"b", "d", "f"}),
    ({"$and": [{"genre": "drama"}, {"year": {"$gt": 2019}}]}, {"c"}),
    ({"$or": [{"$and": [{"draft": True}, {"rating": {"$gte": 4}}]}, {"tags": "z"}]}, {"d", "e"}),
]


async def _seed(memory: WorkspaceMemory, rng: np.random.Generator) -> dict[str, list[float]]:
    vectors = {vid: unit(rng) for vid in RECORDS}
    await memory.upsert("notes", [UpsertItem(id=v, values=vectors[v], metadata=md) for v, md in RECORDS.items()])
    return vectors


async def test_upsert_fetch_overwrite_and_count(open_memory: Opener) -> None:
    memory, _ = await open_memory()
    rng = np.random.default_rng(1)
    vectors = await _seed(memory, rng)
    assert (await memory.describe("notes")).count == 6
    fetched = {r.id: r for r in await memory.fetch("notes", ["a", "c", "missing"])}
    assert set(fetched) == {"a", "c"}
    np.testing.assert_allclose(fetched["a"].values, vectors["a"], rtol=1e-5, atol=1e-6)
    assert fetched["a"].metadata == RECORDS["a"]

    new = unit(rng)
    await memory.upsert("notes", [UpsertItem(id="a", values=new, metadata={"genre": "western"})])
    (again,) = await memory.fetch("notes", ["a"])
    np.testing.assert_allclose(again.values, new, rtol=1e-5, atol=1e-6)
    assert again.metadata == {"genre": "western"}
    assert (await memory.describe("notes")).count == 6
    hits = await memory.query("notes", vector=new, top_k=1)
    assert hits[0].id == "a" and hits[0].metadata == {"genre": "western"}


async def test_query_by_vector_ranks_by_cosine(open_memory: Opener) -> None:
    memory, _ = await open_memory()
    rng = np.random.default_rng(2)
    vectors = await _seed(memory, rng)
    probe = np.asarray(vectors["d"]) + 0.1 * np.asarray(unit(rng))
    hits = await memory.query("notes", vector=probe.tolist(), top_k=4, include_values=True)
    matrix = np.asarray([vectors[v] for v in RECORDS])
    cosine = matrix @ probe / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(probe))
    expected = [list(RECORDS)[i] for i in np.argsort(-cosine)[:4]]
    assert [h.id for h in hits] == expected
    np.testing.assert_allclose([h.score for h in hits], np.sort(cosine)[::-1][:4], atol=1e-4)
    np.testing.assert_allclose(hits[0].values, vectors["d"], rtol=1e-5, atol=1e-6)
    assert hits[0].metadata == RECORDS["d"]
    bare = await memory.query("notes", vector=probe.tolist(), top_k=2, include_metadata=False)
    assert [h.metadata for h in bare] == [None, None] and [h.values for h in bare] == [None, None]


async def test_query_by_id_and_by_text(open_memory: Opener) -> None:
    memory, _ = await open_memory()
    vectors = await _seed(memory, np.random.default_rng(3))
    by_id = await memory.query("notes", id="b", top_k=3)
    assert by_id[0].id == "b" and by_id[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(by_id) == 3 and vectors
    with pytest.raises(NotFound):
        await memory.query("notes", id="nope")

    docs = {"shoe": "red running shoes for the marathon", "cake": "chocolate cake recipe with cream",
            "mail": "reply to the customer email about a refund"}
    await memory.upsert("notes", [UpsertItem(id=k, text=t, metadata={"kind": "doc"}) for k, t in docs.items()])
    hits = await memory.query("notes", text="running shoes", top_k=1, filter={"kind": "doc"})
    assert hits[0].id == "shoe"
    hits = await memory.query("notes", text="a chocolate cake", top_k=1, filter={"kind": "doc"})
    assert hits[0].id == "cake"


async def test_every_filter_operator(open_memory: Opener) -> None:
    memory, _ = await open_memory()
    await _seed(memory, np.random.default_rng(4))
    probe = unit(np.random.default_rng(5))
    wrong = {}
    for flt, expected in FILTERS:
        got = {h.id for h in await memory.query("notes", vector=probe, top_k=100, filter=flt)}
        if got != expected:
            wrong[str(flt)] = (sorted(got), sorted(expected))
    assert not wrong, f"filters answered wrongly (got, expected): {wrong}"


async def test_delete_by_ids_and_by_filter(open_memory: Opener) -> None:
    memory, _ = await open_memory()
    await _seed(memory, np.random.default_rng(6))
    await memory.delete("notes", ids=["a", "zzz"])
    assert (await memory.describe("notes")).count == 5
    assert await memory.fetch("notes", ["a"]) == []
    await memory.delete("notes", filter={"year": {"$gte": 2022}})
    remaining = {h.id for h in await memory.query("notes", vector=unit(np.random.default_rng(7)), top_k=100)}
    assert remaining == {"b", "c", "e"}
    assert (await memory.describe("notes")).count == 3
    with pytest.raises(InvalidRequest):
        await memory.delete("notes", filter={})


async def test_other_metrics_score_like_pinecone(open_memory: Opener) -> None:
    rng = np.random.default_rng(8)
    for metric in ("dotproduct", "euclidean"):
        memory, _ = await open_memory(metric=metric)
        vectors = {f"v{i}": (np.asarray(unit(rng)) * rng.uniform(0.5, 2)).tolist() for i in range(8)}
        await memory.upsert("notes", [UpsertItem(id=k, values=v) for k, v in vectors.items()])
        probe = np.asarray(unit(rng)) * 1.5
        hits = await memory.query("notes", vector=probe.tolist(), top_k=3)
        matrix = np.asarray(list(vectors.values()))
        if metric == "dotproduct":
            scores = matrix @ probe
            order = np.argsort(-scores)
        else:
            scores = ((matrix - probe) ** 2).sum(axis=1)  # squared distance, smaller is closer
            order = np.argsort(scores)
        assert [h.id for h in hits] == [list(vectors)[i] for i in order[:3]]
        np.testing.assert_allclose([h.score for h in hits], scores[order[:3]], rtol=1e-4, atol=1e-4)


async def test_workspaces_with_the_same_namespace_never_meet(open_memory: Opener) -> None:
    memory_a, memory_b = await open_memory()
    rng = np.random.default_rng(9)
    shared = unit(rng)
    await memory_a.upsert("notes", [UpsertItem(id="same-id", values=shared, metadata={"owner": "a"})])
    await memory_b.upsert("notes", [UpsertItem(id="other", values=unit(rng), metadata={"owner": "b"})])
    hits = await memory_b.query("notes", vector=shared, top_k=10)
    assert [h.id for h in hits] == ["other"]
    assert await memory_b.fetch("notes", ["same-id"]) == []
    await memory_b.delete("notes", ids=["same-id"])
    await memory_b.delete("notes", filter={"owner": "a"})
    assert [r.metadata for r in await memory_a.fetch("notes", ["same-id"])] == [{"owner": "a"}]
    assert (await memory_a.describe("notes")).count == 1
    await memory_b.delete_namespace("notes")
    assert (await memory_a.describe("notes")).count == 1
    with pytest.raises(NotFound):
        await memory_b.describe("notes")


async def test_a_dropped_namespace_comes_back_empty(open_memory: Opener) -> None:
    memory, _ = await open_memory()
    await _seed(memory, np.random.default_rng(10))
    await memory.delete_namespace("notes")
    info = await memory.create_namespace("notes", dimension=DIM)
    assert info.count == 0
    assert await memory.fetch("notes", list(RECORDS)) == []
    assert await memory.query("notes", vector=unit(np.random.default_rng(11)), top_k=5) == []
