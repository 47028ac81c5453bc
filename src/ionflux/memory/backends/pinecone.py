"""Pinecone backend through the official `pinecone` SDK's data-plane client (`AsyncIndex`).

One serverless index per deployment (its host is `IONFLUX_PINECONE_BASE_URL`, so no control-plane
lookup); each physical namespace is a Pinecone namespace, which Pinecone isolates natively. An index
has one dimension and metric, so namespaces of another shape are refused with a 400. The API key is the
platform's (`IONFLUX_PINECONE_API_KEY`, in the vault), read per call so a rotation needs no restart.
Pinecone counts and reads are eventually consistent: a record just written may take a moment to be
counted or found on the real service (the simulator is immediate).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import numpy as np
from pinecone import AsyncIndex
from pinecone.errors.exceptions import (
    ApiError,
    NotFoundError,
    PineconeConnectionError,
    PineconeError,
    PineconeTimeoutError,
    RateLimitError,
    UnauthorizedError,
)

from ionflux.core.errors import InvalidRequest, ProviderApiError, ProviderUnavailable, RateLimited
from ionflux.memory.backends.base import NamespaceRef, Upsert, as_floats
from ionflux.memory.filters import Node, to_json
from ionflux.memory.interface import Match, Metric, VectorRecord

MAX_REQUEST_BYTES = 2 * 1024 * 1024  # Pinecone's cap on one upsert request
MAX_PER_REQUEST = 1000
FETCH_CHUNK = 100  # ids travel in the query string
ApiKeySource = Callable[[], Awaitable[str]]


class PineconeBackend:
    name = "pinecone"

    def __init__(self, host: str, api_key: ApiKeySource, *, timeout: float = 30.0) -> None:
        self.host = host
        self.api_key = api_key
        self.timeout = timeout
        self._clients: dict[str, AsyncIndex] = {}
        self._shape: tuple[int, str] | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    async def check_shape(self, dimension: int, metric: Metric) -> None:
        index_dimension, index_metric = await self._index_shape()
        if dimension != index_dimension:
            raise InvalidRequest(f"the Pinecone index of this deployment has dimension {index_dimension}; "
                                 f"a namespace of dimension {dimension} cannot live in it", field="dimension")
        if metric != index_metric:
            raise InvalidRequest(f"the Pinecone index of this deployment uses the {index_metric} metric, "
                                 f"not {metric}", field="metric")

    async def create(self, ns: NamespaceRef) -> None:
        await self.check_shape(ns.dimension, ns.metric)  # Pinecone namespaces appear with their first write

    async def drop(self, ns: NamespaceRef) -> None:
        async with self._index() as index:
            with contextlib.suppress(NotFoundError):  # never written to
                await index.delete(delete_all=True, namespace=ns.physical)

    async def upsert(self, ns: NamespaceRef, items: Sequence[Upsert]) -> None:
        async with self._index() as index:
            for chunk in _chunks(items):
                await index.upsert(vectors=[{"id": i.id, "values": as_floats(i.values), "metadata": i.metadata}
                                            for i in chunk], namespace=ns.physical, show_progress=False)

    async def query(self, ns: NamespaceRef, vector: np.ndarray, top_k: int, flt: Node | None,
                    include_values: bool, include_metadata: bool) -> list[Match]:
        async with self._index() as index:
            result = await index.query(top_k=top_k, vector=as_floats(vector), namespace=ns.physical,
                                       filter=to_json(flt) if flt is not None else None,
                                       include_values=include_values, include_metadata=include_metadata)
        return [Match(id=m.id, score=float(m.score), values=list(m.values) if include_values else None,
                      metadata=dict(m.metadata or {}) if include_metadata else None)
                for m in result.matches]

    async def fetch(self, ns: NamespaceRef, ids: Sequence[str]) -> list[VectorRecord]:
        wanted = list(dict.fromkeys(ids))
        out: list[VectorRecord] = []
        async with self._index() as index:
            for start in range(0, len(wanted), FETCH_CHUNK):
                result = await index.fetch(ids=wanted[start:start + FETCH_CHUNK], namespace=ns.physical)
                out.extend(VectorRecord(id=vid, values=list(v.values), metadata=dict(v.metadata or {}))
                           for vid, v in result.vectors.items())
        return out

    async def delete_ids(self, ns: NamespaceRef, ids: Sequence[str]) -> None:
        async with self._index() as index:
            with contextlib.suppress(NotFoundError):  # a namespace never written to: nothing to delete
                await index.delete(ids=list(ids), namespace=ns.physical)

    async def delete_filter(self, ns: NamespaceRef, flt: Node) -> None:
        async with self._index() as index:
            with contextlib.suppress(NotFoundError):
                await index.delete(filter=to_json(flt), namespace=ns.physical)

    async def count(self, ns: NamespaceRef) -> int:
        async with self._index() as index:
            try:  # one namespace's count (describe_index_stats would list every namespace of the index)
                description = await index.describe_namespace(name=ns.physical)
            except NotFoundError:
                return 0  # never written to
        return int(description.record_count)

    async def _index_shape(self) -> tuple[int, str]:
        if self._shape is None:
            async with self._index() as index:
                stats = await index.describe_index_stats()
            if stats.dimension is None or stats.metric is None:
                raise ProviderApiError("the Pinecone index did not report its dimension and metric")
            self._shape = (int(stats.dimension), str(stats.metric))
        return self._shape

    @asynccontextmanager
    async def _index(self) -> AsyncIterator[AsyncIndex]:
        key = await self.api_key()
        fingerprint = hashlib.sha256(key.encode()).hexdigest()
        client = self._clients.get(fingerprint)
        if client is None:
            for old in self._clients.values():  # a rotated key: the old client goes
                await old.close()
            self._clients = {fingerprint: AsyncIndex(host=self.host, api_key=key, timeout=self.timeout)}
            client = self._clients[fingerprint]
        try:
            yield client
        except RateLimitError as exc:
            raise RateLimited("pinecone is rate limiting this index") from exc
        except UnauthorizedError as exc:
            raise ProviderApiError("pinecone refused the platform API key (IONFLUX_PINECONE_API_KEY)") from exc
        except ApiError as exc:
            raise ProviderApiError(f"pinecone answered {exc.status_code}: {exc.message[:300]}") from exc
        except (PineconeConnectionError, PineconeTimeoutError) as exc:
            raise ProviderUnavailable(f"pinecone is unreachable: {type(exc).__name__}") from exc
        except PineconeError as exc:
            raise ProviderApiError(f"pinecone client error: {exc}"[:300]) from exc


def _chunks(items: Sequence[Upsert]) -> list[list[Upsert]]:
    """Batches under both of Pinecone's caps: 1,000 vectors and 2 MB a request (JSON size estimated)."""
    chunks: list[list[Upsert]] = [[]]
    size = 0
    for item in items:
        # a float32 sent as a Python float prints up to ~22 characters ("-0.012345678918063641, ")
        estimate = 64 + len(item.id) + 22 * len(item.values) + len(json.dumps(item.metadata))
        if chunks[-1] and (size + estimate > MAX_REQUEST_BYTES * 0.9 or len(chunks[-1]) >= MAX_PER_REQUEST):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += estimate
    return [c for c in chunks if c]
