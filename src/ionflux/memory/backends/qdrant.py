"""Qdrant backend through `qdrant-client` (a Qdrant server, or the client's local mode in tests).

Layout: one collection per vector shape (`ionflux_<metric>_<dimension>`), partitioned by a `_ns` payload
field holding the physical namespace, with a tenant keyword index on it. That is Qdrant's own advice for
many small tenants: a collection costs its own segments, WAL and HNSW graph, so thousands of agent
namespaces as collections would waste memory and hit collection limits, while the tenant index keeps
each namespace's points together and makes the `_ns` filter cheap. A collection cannot mix dimensions or
metrics, hence one per shape. Every operation goes through `_scoped`, which ANDs the `_ns` condition in,
and point ids are UUIDv5 of (physical namespace, id), so namespaces cannot address each other's points.

Payload: `{"_ns", "_id" (our id), "_norm" (the vector's norm: Qdrant stores cosine vectors normalised,
so fetch scales them back), "md" (user metadata; filter keys become `md.<key>`)}`.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ionflux.core.errors import ProviderApiError, ProviderUnavailable, RateLimited
from ionflux.memory.backends.base import NamespaceRef, Upsert, as_floats
from ionflux.memory.filters import AllOf, AnyOf, Cond, Node, is_number
from ionflux.memory.interface import Match, Metric, VectorRecord

_DISTANCE = {"cosine": models.Distance.COSINE, "dotproduct": models.Distance.DOT,
             "euclidean": models.Distance.EUCLID}
_POINT_NS = uuid.UUID("5d0c7f0e-2b7a-4a57-9d3e-6c1f0b8e4a11")


class QdrantBackend:
    name = "qdrant"

    def __init__(self, connect: Callable[[], Awaitable[AsyncQdrantClient]], *, prefix: str = "ionflux_") -> None:
        self.connect = connect
        self.prefix = prefix
        self._client: AsyncQdrantClient | None = None
        self._known: set[str] = set()

    @property
    def client(self) -> AsyncQdrantClient:
        if self._client is None:
            raise ProviderUnavailable("the qdrant backend has not started")
        return self._client

    async def start(self) -> None:
        self._client = await self.connect()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def check_shape(self, dimension: int, metric: Metric) -> None:
        return None

    def collection(self, ns: NamespaceRef) -> str:
        return f"{self.prefix}{ns.metric}_{ns.dimension}"

    async def create(self, ns: NamespaceRef) -> None:
        name = self.collection(ns)
        if name in self._known:
            return
        async with _errors():
            if not await self.client.collection_exists(name):
                try:
                    await self.client.create_collection(
                        name, vectors_config=models.VectorParams(size=ns.dimension, distance=_DISTANCE[ns.metric]))
                except (UnexpectedResponse, ValueError):
                    if not await self.client.collection_exists(name):  # not a lost creation race
                        raise
            with warnings.catch_warnings():  # local mode has no payload indexes and says so
                warnings.simplefilter("ignore")
                await self.client.create_payload_index(
                    name, "_ns", field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD,
                                                                         is_tenant=True))
        self._known.add(name)

    async def drop(self, ns: NamespaceRef) -> None:
        if not await self._exists(ns):
            return
        async with _errors():
            await self.client.delete(self.collection(ns), points_selector=models.FilterSelector(filter=_scoped(ns)))

    async def upsert(self, ns: NamespaceRef, items: Sequence[Upsert]) -> None:
        await self.create(ns)
        points = [
            models.PointStruct(
                id=point_id(ns, item.id), vector=as_floats(item.values),
                payload={"_ns": ns.physical, "_id": item.id, "_norm": float(np.linalg.norm(item.values)),
                         "md": item.metadata})
            for item in items
        ]
        async with _errors():
            await self.client.upsert(self.collection(ns), points=points, wait=True)

    async def query(self, ns: NamespaceRef, vector: np.ndarray, top_k: int, flt: Node | None,
                    include_values: bool, include_metadata: bool) -> list[Match]:
        if not await self._exists(ns):
            return []
        async with _errors():
            result = await self.client.query_points(
                self.collection(ns), query=as_floats(vector), query_filter=_scoped(ns, flt), limit=top_k,
                with_payload=True, with_vectors=include_values)
        out = []
        for point in result.points:
            payload = point.payload or {}
            if payload.get("_ns") != ns.physical:
                continue  # unreachable through _scoped; kept as a tenancy guard
            score = point.score ** 2 if ns.metric == "euclidean" else point.score
            out.append(Match(id=str(payload["_id"]), score=float(score),
                             values=_values(ns, point.vector, payload) if include_values else None,
                             metadata=dict(payload.get("md") or {}) if include_metadata else None))
        return out

    async def fetch(self, ns: NamespaceRef, ids: Sequence[str]) -> list[VectorRecord]:
        if not await self._exists(ns):
            return []
        async with _errors():
            records = await self.client.retrieve(
                self.collection(ns), ids=[point_id(ns, i) for i in dict.fromkeys(ids)],
                with_payload=True, with_vectors=True)
        return [
            VectorRecord(id=str(r.payload["_id"]), values=_values(ns, r.vector, r.payload),
                         metadata=dict(r.payload.get("md") or {}))
            for r in records if r.payload and r.payload.get("_ns") == ns.physical
        ]

    async def delete_ids(self, ns: NamespaceRef, ids: Sequence[str]) -> None:
        if not await self._exists(ns):
            return
        async with _errors():
            await self.client.delete(self.collection(ns), points_selector=models.PointIdsList(
                points=[point_id(ns, i) for i in ids]))

    async def delete_filter(self, ns: NamespaceRef, flt: Node) -> None:
        if not await self._exists(ns):
            return
        async with _errors():
            await self.client.delete(self.collection(ns),
                                     points_selector=models.FilterSelector(filter=_scoped(ns, flt)))

    async def count(self, ns: NamespaceRef) -> int:
        if not await self._exists(ns):
            return 0
        async with _errors():
            result = await self.client.count(self.collection(ns), count_filter=_scoped(ns), exact=True)
        return int(result.count)

    async def _exists(self, ns: NamespaceRef) -> bool:
        name = self.collection(ns)
        if name in self._known:
            return True
        async with _errors():
            if await self.client.collection_exists(name):
                self._known.add(name)
                return True
        return False


def point_id(ns: NamespaceRef, vid: str) -> str:
    return str(uuid.uuid5(_POINT_NS, f"{ns.physical}\x00{vid}"))


def _values(ns: NamespaceRef, vector: Any, payload: dict[str, Any]) -> list[float]:
    values = np.asarray(vector, dtype=np.float64)
    if ns.metric == "cosine":
        values = values * float(payload.get("_norm", 1.0))
    return as_floats(values.astype(np.float32))


def _scoped(ns: NamespaceRef, flt: Node | None = None) -> models.Filter:
    must: list[models.Condition] = [models.FieldCondition(key="_ns", match=models.MatchValue(value=ns.physical))]
    if flt is not None:
        must.append(to_qdrant(flt))
    return models.Filter(must=must)


def to_qdrant(node: Node) -> models.Filter:
    """Our filter tree as a Qdrant filter with the same semantics (see ionflux.memory.filters)."""
    if isinstance(node, AllOf):
        return models.Filter(must=[to_qdrant(p) for p in node.parts])
    if isinstance(node, AnyOf):
        return models.Filter(should=[to_qdrant(p) for p in node.parts])
    return _cond(node)


def _cond(c: Cond) -> models.Filter:
    key = f"md.{c.key}"
    present: list[models.Condition] = [models.IsEmptyCondition(is_empty=models.PayloadField(key=key))]
    if c.op == "$eq":
        return models.Filter(must=[_equals(key, c.value)])
    if c.op == "$ne":
        return models.Filter(must_not=[*present, _equals(key, c.value)])
    if c.op in ("$in", "$nin"):
        items = c.value if isinstance(c.value, tuple) else (c.value,)
        strings = [v for v in items if isinstance(v, str)]
        alternatives: list[models.Condition] = [_equals(key, v) for v in items if is_number(v)]
        if strings:
            alternatives.append(models.FieldCondition(key=key, match=models.MatchAny(any=strings)))
        if c.op == "$in":
            return models.Filter(should=alternatives)
        return models.Filter(must_not=[*present, *alternatives])
    bound = float(c.value)  # type: ignore[arg-type]
    rng = {"$gt": models.Range(gt=bound), "$gte": models.Range(gte=bound),
           "$lt": models.Range(lt=bound), "$lte": models.Range(lte=bound)}[c.op]
    return models.Filter(must=[models.FieldCondition(key=key, range=rng)])


def _equals(key: str, value: object) -> models.FieldCondition:
    if is_number(value):  # Qdrant matches floats only through ranges; a range also matches ints
        v = float(value)  # type: ignore[arg-type]
        return models.FieldCondition(key=key, range=models.Range(gte=v, lte=v))
    assert isinstance(value, str | bool)
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


class _errors:
    """Map client failures to our codes (never leaking the API key, which the client does not print)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if isinstance(exc, ResourceExhaustedResponse):
            raise RateLimited(f"qdrant is rate limiting: {exc.message}") from exc
        if isinstance(exc, UnexpectedResponse):
            raise ProviderApiError(f"qdrant answered {exc.status_code}: {exc.content[:200]!r}") from exc
        if isinstance(exc, ResponseHandlingException | ConnectionError | TimeoutError):
            raise ProviderUnavailable(f"qdrant is unreachable: {type(exc).__name__}") from exc
