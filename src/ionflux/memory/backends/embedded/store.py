"""The embedded engine's records in the database: the source of truth its in-memory indexes load from.

Every write batch bumps the namespace's `version` in the same transaction and stamps the rows it
touches with it (`seq`), so an on-disk HNSW snapshot taken at version W is caught up by replaying rows
with `seq > W`. Deletes on a namespace with a snapshot leave tombstones until a newer snapshot covers
them; other deletes remove the rows outright.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Insert, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.db import Database
from ionflux.memory.backends.base import NamespaceRef, Upsert
from ionflux.memory.interface import Metadata
from ionflux.memory.models import MemoryNamespace, MemoryVector


@dataclass(frozen=True)
class LoadedRows:
    version: int
    labels: np.ndarray
    ids: list[str]
    vectors: np.ndarray
    metadata: list[Metadata]


class EmbeddedStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, ns: NamespaceRef) -> LoadedRows:
        async with self.db.tenant(ns.workspace_id) as s:
            version = await self._version(s, ns)
            result = await s.execute(
                select(MemoryVector.label, MemoryVector.vid, MemoryVector.vec, MemoryVector.meta)
                .where(MemoryVector.namespace == ns.physical, MemoryVector.deleted.is_(False))
                .order_by(MemoryVector.label)
            )
            rows = result.all()
        labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(r[2] or b"" for r in rows)
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), ns.dimension)
        return LoadedRows(version, labels, [r[1] for r in rows], vectors, [dict(r[3] or {}) for r in rows])

    async def count(self, ns: NamespaceRef) -> int:
        async with self.db.tenant(ns.workspace_id) as s:
            n = await s.scalar(select(func.count()).select_from(MemoryVector).where(
                MemoryVector.namespace == ns.physical, MemoryVector.deleted.is_(False)))
        return int(n or 0)

    async def changed_since(self, ns: NamespaceRef, seq: int) -> list[int]:
        """Labels of rows written or deleted after `seq`."""
        async with self.db.tenant(ns.workspace_id) as s:
            result = await s.execute(
                select(MemoryVector.label).where(MemoryVector.namespace == ns.physical, MemoryVector.seq > seq)
            )
            return [int(r[0]) for r in result.all()]

    async def write(self, ns: NamespaceRef, items: Sequence[Upsert]) -> tuple[int, dict[str, int]]:
        """Upsert rows; returns (new version, id -> label)."""
        async with self.db.tenant(ns.workspace_id) as s:
            version = await self._bump(s, ns)
            values: list[dict[str, Any]] = [
                {"workspace_id": ns.workspace_id, "namespace": ns.physical, "vid": item.id,
                 "vec": item.values.astype(np.float32).tobytes(), "meta": item.metadata, "seq": version,
                 "deleted": False}
                for item in items
            ]
            stmt = self._insert()
            stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["namespace", "vid"],
                set_={"vec": stmt.excluded.vec, "meta": stmt.excluded.meta,  # type: ignore[attr-defined]
                      "seq": stmt.excluded.seq, "deleted": False},  # type: ignore[attr-defined]
            ).returning(MemoryVector.__table__.c.label, MemoryVector.__table__.c.vid)
            # executemany: SQLAlchemy batches it into multi-row INSERT ... RETURNING ("insertmanyvalues")
            result = await s.execute(stmt, values)
            labels = {str(r[1]): int(r[0]) for r in result.all()}
        return version, labels

    async def remove(self, ns: NamespaceRef, ids: Sequence[str], *, tombstone: bool) -> tuple[int, list[int]]:
        """Delete rows by id; returns (new version, labels that were live)."""
        async with self.db.tenant(ns.workspace_id) as s:
            version = await self._bump(s, ns)
            where = (MemoryVector.namespace == ns.physical, MemoryVector.vid.in_(list(ids)),
                     MemoryVector.deleted.is_(False))
            if tombstone:
                result = await s.execute(
                    update(MemoryVector).where(*where)
                    .values(deleted=True, vec=None, meta={}, seq=version)
                    .returning(MemoryVector.label)
                )
            else:
                result = await s.execute(delete(MemoryVector).where(*where).returning(MemoryVector.label))
            return version, [int(r[0]) for r in result.all()]

    async def purge_tombstones(self, ns: NamespaceRef, upto: int) -> None:
        async with self.db.tenant(ns.workspace_id) as s:
            await s.execute(delete(MemoryVector).where(
                MemoryVector.namespace == ns.physical, MemoryVector.deleted.is_(True), MemoryVector.seq <= upto))

    async def drop(self, ns: NamespaceRef) -> None:
        async with self.db.tenant(ns.workspace_id) as s:
            await s.execute(delete(MemoryVector).where(MemoryVector.namespace == ns.physical))

    def _insert(self) -> Insert:
        table = MemoryVector.__table__
        stmt: Insert = sqlite.insert(table) if self.db.is_sqlite else postgresql.insert(table)  # type: ignore[arg-type]
        return stmt

    @staticmethod
    async def _version(s: AsyncSession, ns: NamespaceRef) -> int:
        version = await s.scalar(select(MemoryNamespace.version).where(MemoryNamespace.physical == ns.physical))
        return int(version or 0)

    @staticmethod
    async def _bump(s: AsyncSession, ns: NamespaceRef) -> int:
        # The row lock this takes also serialises writers of one namespace across connections.
        version = await s.scalar(
            update(MemoryNamespace).where(MemoryNamespace.physical == ns.physical)
            .values(version=MemoryNamespace.version + 1).returning(MemoryNamespace.version)
        )
        if version is None:
            raise LookupError(f"namespace {ns.name!r} is not registered")
        return int(version)
