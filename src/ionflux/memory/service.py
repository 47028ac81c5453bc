"""The memory rules: namespace registry, validation, embedding of `text`, and dispatch to the backend.

Knows no HTTP. Every call names its workspace; the namespace is looked up in that workspace only (a
tenant session), so a workspace can never reach another's namespace, whatever the name. The backend then
sees only the physical name derived from (workspace, namespace).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ionflux.core.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from ionflux.core.platform import Platform
from ionflux.memory.backends.base import NamespaceRef, Upsert, VectorBackend
from ionflux.memory.embedding import embed_texts
from ionflux.memory.filters import parse_filter
from ionflux.memory.interface import (
    MAX_BATCH,
    MAX_DIMENSION,
    MAX_TOP_K,
    METRICS,
    Match,
    Metric,
    NamespaceInfo,
    UpsertItem,
    VectorRecord,
)
from ionflux.memory.metrics import MemoryMetrics
from ionflux.memory.models import MemoryNamespace
from ionflux.memory.templates import check_namespace, physical_name, resolve_namespace_template
from ionflux.memory.validation import check_id, check_ids, check_metadata, check_vector


class MemoryStore:
    def __init__(self, platform: Platform, backend: VectorBackend, *, default_dimension: int = 384,
                 metrics: MemoryMetrics | None = None) -> None:
        self.platform = platform
        self.backend = backend
        self.default_dimension = default_dimension
        self.metrics = metrics

    def _timed(self, operation: str) -> AbstractContextManager[None]:
        return self.metrics.timed(self.backend.name, operation) if self.metrics else nullcontext()

    def for_workspace(self, workspace_id: str) -> WorkspaceMemory:
        return WorkspaceMemory(self, workspace_id)

    # -- namespaces ---------------------------------------------------------------------------------
    async def create_namespace(
        self, workspace_id: str, name: str, *, dimension: int | None = None, metric: str = "cosine",
        embedding_model: str | None = None, template: str | None = None,
    ) -> tuple[NamespaceInfo, bool]:
        """Create (or find, if it exists with the same shape); returns (info, created)."""
        check_namespace(name, field="name")
        dimension = self.default_dimension if dimension is None else dimension
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
            raise InvalidRequest(f"dimension must be an integer from 1 to {MAX_DIMENSION}", field="dimension")
        if metric not in METRICS:
            raise InvalidRequest(f"metric must be one of {', '.join(METRICS)}", field="metric")
        existing = await self._find(workspace_id, name)
        if existing is not None:
            if (existing.dimension, existing.metric) != (dimension, metric):
                raise Conflict(f"namespace {name!r} exists with dimension {existing.dimension} and metric "
                               f"{existing.metric}", field="name")
            return await self._info(existing), False
        await self.backend.check_shape(dimension, metric)
        row = MemoryNamespace(name=name, physical=physical_name(workspace_id, name), dimension=dimension,
                              metric=metric, backend=self.backend.name, embedding_model=embedding_model,
                              template=template)
        try:
            async with self.platform.db.tenant(workspace_id) as s:
                s.add(row)
        except IntegrityError:
            return await self.create_namespace(workspace_id, name, dimension=dimension, metric=metric,
                                               embedding_model=embedding_model, template=template)
        ref = self._ref(workspace_id, row)
        try:
            await self.backend.create(ref)
        except BaseException:
            await self._unregister(workspace_id, name)
            raise
        return NamespaceInfo(name, dimension, metric, self.backend.name, 0, embedding_model), True

    async def create_from_template(
        self, workspace_id: str, template: str, variables: Mapping[str, object], **options: Any
    ) -> tuple[NamespaceInfo, bool]:
        variables = {**variables, "workspace_id": variables.get("workspace_id", workspace_id)}
        if variables["workspace_id"] != workspace_id:
            raise InvalidRequest("workspace_id in variables must be the caller's workspace", field="variables")
        name = resolve_namespace_template(template, variables, field="template")
        return await self.create_namespace(workspace_id, name, template=template, **options)

    async def describe(self, workspace_id: str, name: str) -> NamespaceInfo:
        return await self._info(await self._get(workspace_id, name))

    async def list_namespaces(self, workspace_id: str) -> list[NamespaceInfo]:
        async with self.platform.db.tenant(workspace_id) as s:
            rows = (await s.scalars(select(MemoryNamespace).order_by(MemoryNamespace.name))).all()
        return [await self._info(r) for r in rows]

    async def delete_namespace(self, workspace_id: str, name: str) -> None:
        row = await self._get(workspace_id, name)
        await self.backend.drop(self._ref(workspace_id, row))  # data first: a crash leaves an empty namespace
        await self._unregister(workspace_id, name)

    # -- records ------------------------------------------------------------------------------------
    async def upsert(self, workspace_id: str, name: str, items: Sequence[UpsertItem]) -> int:
        row = await self._get(workspace_id, name)
        if not isinstance(items, Sequence) or not items:
            raise InvalidRequest("vectors must be a non-empty list", field="vectors")
        if len(items) > MAX_BATCH:
            raise InvalidRequest(f"at most {MAX_BATCH} vectors per upsert (got {len(items)})", field="vectors")
        seen: set[str] = set()
        vectors: list[np.ndarray | None] = []
        texts: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            where = f"vectors[{i}]"
            vid = check_id(item.id, field=f"{where}.id")
            if vid in seen:
                raise InvalidRequest(f"id {vid!r} appears twice in one upsert", field=f"{where}.id")
            seen.add(vid)
            if (item.values is None) == (item.text is None):
                raise InvalidRequest("give exactly one of values or text", field=where)
            if item.text is not None:
                if not isinstance(item.text, str) or not item.text.strip():
                    raise InvalidRequest("text must be a non-empty string", field=f"{where}.text")
                texts.append((i, item.text))
                vectors.append(None)
            else:
                vectors.append(self._vector(item.values, row, f"{where}.values"))
        if texts:
            embedded = await embed_texts(self.platform, workspace_id, [t for _, t in texts], row.embedding_model,
                                         dimension=row.dimension, field=f"vectors[{texts[0][0]}].text")
            for (i, _), vector in zip(texts, embedded, strict=True):
                vectors[i] = self._vector(vector, row, f"vectors[{i}].text")
        batch = [Upsert(id=item.id, values=vec, metadata=check_metadata(item.metadata, field=f"vectors[{i}].metadata"))
                 for i, (item, vec) in enumerate(zip(items, vectors, strict=True)) if vec is not None]
        with self._timed("upsert"):
            await self.backend.upsert(self._ref(workspace_id, row), batch)
        if self.metrics:
            self.metrics.written.labels(self.backend.name).inc(len(batch))
        return len(batch)

    async def query(
        self, workspace_id: str, name: str, *, vector: Sequence[float] | None = None, text: str | None = None,
        id: str | None = None, top_k: int = 10, filter: Mapping[str, Any] | None = None,
        include_values: bool = False, include_metadata: bool = True,
    ) -> list[Match]:
        row = await self._get(workspace_id, name)
        if sum(x is not None for x in (vector, text, id)) != 1:
            raise InvalidRequest("give exactly one of vector, text or id", field="vector")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(f"top_k must be an integer from 1 to {MAX_TOP_K}", field="top_k")
        flt = parse_filter(filter)
        ref = self._ref(workspace_id, row)
        if vector is not None:
            query = self._vector(vector, row, "vector")
        elif text is not None:
            if not isinstance(text, str) or not text.strip():
                raise InvalidRequest("text must be a non-empty string", field="text")
            (embedded,) = await embed_texts(self.platform, workspace_id, [text], row.embedding_model,
                                            dimension=row.dimension, field="text")
            query = self._vector(embedded, row, "text")
        else:
            vid = check_id(id, field="id")
            found = await self.backend.fetch(ref, [vid])
            if not found:
                raise NotFound(f"no vector with id {vid!r} in namespace {name!r}", field="id")
            query = np.asarray(found[0].values, dtype=np.float32)
        with self._timed("query"):
            return await self.backend.query(ref, query, top_k, flt, bool(include_values), bool(include_metadata))

    async def fetch(self, workspace_id: str, name: str, ids: Sequence[str]) -> list[VectorRecord]:
        row = await self._get(workspace_id, name)
        wanted = check_ids(ids, field="ids", limit=MAX_BATCH)
        with self._timed("fetch"):
            return await self.backend.fetch(self._ref(workspace_id, row), wanted)

    async def delete(self, workspace_id: str, name: str, *, ids: Sequence[str] | None = None,
                     filter: Mapping[str, Any] | None = None) -> None:
        row = await self._get(workspace_id, name)
        ref = self._ref(workspace_id, row)
        if (ids is None) == (filter is None):
            raise InvalidRequest("give exactly one of ids or filter", field="ids")
        if ids is not None:
            wanted = check_ids(ids, field="ids", limit=MAX_BATCH)
            with self._timed("delete"):
                await self.backend.delete_ids(ref, wanted)
            return
        flt = parse_filter(filter)
        if flt is None:
            raise InvalidRequest("a delete filter must hold at least one condition; delete the namespace to "
                                 "empty it", field="filter")
        with self._timed("delete"):
            await self.backend.delete_filter(ref, flt)

    # -- internals ----------------------------------------------------------------------------------
    def _vector(self, values: object, row: MemoryNamespace, field: str) -> np.ndarray:
        vector = check_vector(values, row.dimension, field=field)
        if row.metric == "cosine" and not np.any(vector):
            raise InvalidRequest("an all-zero vector has no direction for the cosine metric", field=field)
        return vector

    def _ref(self, workspace_id: str, row: MemoryNamespace) -> NamespaceRef:
        if row.backend != self.backend.name:
            raise ServiceUnavailable(f"namespace {row.name!r} lives in the {row.backend} backend; this deployment "
                                     f"runs {self.backend.name}", field="namespace")
        return NamespaceRef(workspace_id, row.name, row.physical, row.dimension, row.metric)  # type: ignore[arg-type]

    async def _info(self, row: MemoryNamespace) -> NamespaceInfo:
        count = await self.backend.count(self._ref(row.workspace_id, row))
        return NamespaceInfo(row.name, row.dimension, row.metric, row.backend, count,  # type: ignore[arg-type]
                             row.embedding_model)

    async def _find(self, workspace_id: str, name: str) -> MemoryNamespace | None:
        async with self.platform.db.tenant(workspace_id) as s:
            row: MemoryNamespace | None = await s.scalar(select(MemoryNamespace).where(MemoryNamespace.name == name))
        return row

    async def _get(self, workspace_id: str, name: str) -> MemoryNamespace:
        check_namespace(name)
        row = await self._find(workspace_id, name)
        if row is None:
            raise NotFound(f"no memory namespace {name!r} in this workspace", field="namespace")
        return row

    async def _unregister(self, workspace_id: str, name: str) -> None:
        async with self.platform.db.tenant(workspace_id) as s:
            row = await s.scalar(select(MemoryNamespace).where(MemoryNamespace.name == name))
            if row is not None:
                await s.delete(row)


class WorkspaceMemory:
    """`VectorMemory` for one workspace: what an agent receives in its context."""

    def __init__(self, store: MemoryStore, workspace_id: str) -> None:
        self.store = store
        self.workspace_id = workspace_id

    async def create_namespace(self, name: str, *, dimension: int | None = None, metric: Metric = "cosine",
                               embedding_model: str | None = None) -> NamespaceInfo:
        info, _ = await self.store.create_namespace(self.workspace_id, name, dimension=dimension, metric=metric,
                                                    embedding_model=embedding_model)
        return info

    async def describe(self, name: str) -> NamespaceInfo:
        return await self.store.describe(self.workspace_id, name)

    async def list_namespaces(self) -> list[NamespaceInfo]:
        return await self.store.list_namespaces(self.workspace_id)

    async def delete_namespace(self, name: str) -> None:
        await self.store.delete_namespace(self.workspace_id, name)

    async def upsert(self, name: str, items: Sequence[UpsertItem]) -> int:
        return await self.store.upsert(self.workspace_id, name, items)

    async def query(self, name: str, *, vector: Sequence[float] | None = None, text: str | None = None,
                    id: str | None = None, top_k: int = 10, filter: Mapping[str, Any] | None = None,
                    include_values: bool = False, include_metadata: bool = True) -> list[Match]:
        return await self.store.query(self.workspace_id, name, vector=vector, text=text, id=id, top_k=top_k,
                                      filter=filter, include_values=include_values,
                                      include_metadata=include_metadata)

    async def fetch(self, name: str, ids: Sequence[str]) -> list[VectorRecord]:
        return await self.store.fetch(self.workspace_id, name, ids)

    async def delete(self, name: str, *, ids: Sequence[str] | None = None,
                     filter: Mapping[str, Any] | None = None) -> None:
        await self.store.delete(self.workspace_id, name, ids=ids, filter=filter)
