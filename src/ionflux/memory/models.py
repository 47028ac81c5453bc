"""Memory tables: the namespace registry (every backend) and the embedded engine's records.

The embedded engine keeps vectors and metadata here (the source of truth); its on-disk HNSW index is
derived data, rebuilt or caught up from `seq` after a crash (see backends/embedded/store.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class MemoryNamespace(TenantScoped, Base):
    __tablename__ = "memory_namespaces"
    __table_args__ = (Index("uq_memory_namespaces_name", "workspace_id", "name", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    physical: Mapped[str] = mapped_column(String(64), unique=True)
    dimension: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(16))
    embedding_model: Mapped[str | None] = mapped_column(String(200), default=None)
    template: Mapped[str | None] = mapped_column(String(500), default=None)
    version: Mapped[int] = mapped_column(BigInteger, default=0)  # bumped by every embedded write
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MemoryVector(TenantScoped, Base):
    """One record of the embedded engine. `label` is its key in the HNSW index; a delete on a namespace
    that has an on-disk index leaves a tombstone (`deleted`, `vec` NULL) until a snapshot covers it."""

    __tablename__ = "memory_vectors"
    __table_args__ = (
        Index("uq_memory_vectors_id", "namespace", "vid", unique=True),
        Index("ix_memory_vectors_seq", "namespace", "seq"),
    )
    label: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    namespace: Mapped[str] = mapped_column(String(64))  # the physical name
    vid: Mapped[str] = mapped_column(String(512))
    vec: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted: Mapped[bool] = mapped_column(default=False)
