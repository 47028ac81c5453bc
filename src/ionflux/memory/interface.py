"""The public face of vector memory: value types and the typed async interface agents receive.

Other packages (the agent bridge, reference agents) use only this module, `ionflux.memory.templates`
and `platform.services["memory"].for_workspace(workspace_id)`, which returns a `VectorMemory`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Metric = Literal["cosine", "dotproduct", "euclidean"]
METRICS: tuple[Metric, ...] = ("cosine", "dotproduct", "euclidean")
MetadataValue = str | int | float | bool | list[str]
Metadata = dict[str, MetadataValue]
MAX_BATCH = 1000
MAX_TOP_K = 1000
MAX_DIMENSION = 4096


@dataclass(frozen=True)
class UpsertItem:
    """One item to write: `values`, or `text` to be embedded by the LLM service."""

    id: str
    values: Sequence[float] | None = None
    text: str | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class VectorRecord:
    id: str
    values: list[float]
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """A query hit. `score`: cosine similarity or dot product (higher is closer), or squared euclidean
    distance (lower is closer) — Pinecone's conventions, on every backend."""

    id: str
    score: float
    values: list[float] | None = None
    metadata: Metadata | None = None


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    dimension: int
    metric: Metric
    backend: str
    count: int
    embedding_model: str | None = None


class VectorMemory(Protocol):
    """One workspace's vector memory. Filters use `$eq $ne $in $nin $gt $gte $lt $lte $and $or`."""

    async def create_namespace(
        self, name: str, *, dimension: int | None = None, metric: Metric = "cosine",
        embedding_model: str | None = None,
    ) -> NamespaceInfo: ...

    async def describe(self, name: str) -> NamespaceInfo: ...

    async def list_namespaces(self) -> list[NamespaceInfo]: ...

    async def delete_namespace(self, name: str) -> None: ...

    async def upsert(self, name: str, items: Sequence[UpsertItem]) -> int: ...

    async def query(
        self, name: str, *, vector: Sequence[float] | None = None, text: str | None = None,
        id: str | None = None, top_k: int = 10, filter: Mapping[str, Any] | None = None,
        include_values: bool = False, include_metadata: bool = True,
    ) -> list[Match]: ...

    async def fetch(self, name: str, ids: Sequence[str]) -> list[VectorRecord]: ...

    async def delete(
        self, name: str, *, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> None: ...
