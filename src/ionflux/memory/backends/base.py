"""The port every vector engine implements; the service validates everything before calling it.

Backends receive a `NamespaceRef` whose `physical` name is already derived from (workspace, namespace),
checked vectors (float32, the namespace's dimension), checked metadata and a parsed filter tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ionflux.memory.filters import Node
from ionflux.memory.interface import Match, Metadata, Metric, VectorRecord


@dataclass(frozen=True)
class NamespaceRef:
    workspace_id: str
    name: str
    physical: str
    dimension: int
    metric: Metric


@dataclass(frozen=True)
class Upsert:
    id: str
    values: np.ndarray  # float32, shape (dimension,)
    metadata: Metadata


class VectorBackend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check_shape(self, dimension: int, metric: Metric) -> None:
        """Raise InvalidRequest if this backend cannot hold a namespace of this shape."""

    async def create(self, ns: NamespaceRef) -> None: ...

    async def drop(self, ns: NamespaceRef) -> None: ...

    async def upsert(self, ns: NamespaceRef, items: Sequence[Upsert]) -> None: ...

    async def query(
        self, ns: NamespaceRef, vector: np.ndarray, top_k: int, flt: Node | None,
        include_values: bool, include_metadata: bool,
    ) -> list[Match]: ...

    async def fetch(self, ns: NamespaceRef, ids: Sequence[str]) -> list[VectorRecord]: ...

    async def delete_ids(self, ns: NamespaceRef, ids: Sequence[str]) -> None: ...

    async def delete_filter(self, ns: NamespaceRef, flt: Node) -> None: ...

    async def count(self, ns: NamespaceRef) -> int: ...


def as_floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values.astype(np.float32)]
