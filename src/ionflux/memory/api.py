"""HTTP surface of vector memory (workspace-scoped): a thin layer over `MemoryStore`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from ionflux.core.auth import WorkspaceId
from ionflux.core.errors import InvalidRequest
from ionflux.memory.interface import Match, NamespaceInfo, UpsertItem, VectorRecord
from ionflux.memory.service import MemoryStore


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateNamespace(_Body):
    name: str | None = Field(default=None, description="the namespace; or give template (+ variables)")
    template: str | None = Field(default=None, description="e.g. emailwizard_instance_{{instance_id}}")
    variables: dict[str, Any] = Field(default_factory=dict)
    dimension: int | None = None
    metric: str = "cosine"
    embedding_model: str | None = None


class Item(_Body):
    id: Any = None
    values: list[Any] | None = None
    text: Any = None
    metadata: dict[str, Any] | None = None


class UpsertBody(_Body):
    vectors: list[Item]


class QueryBody(_Body):
    vector: list[Any] | None = None
    text: Any = None
    id: Any = None
    top_k: Any = 10
    filter: dict[str, Any] | None = None
    include_values: bool = False
    include_metadata: bool = True


class FetchBody(_Body):
    ids: list[Any]


class DeleteBody(_Body):
    ids: list[Any] | None = None
    filter: dict[str, Any] | None = None


def _namespace(info: NamespaceInfo) -> dict[str, Any]:
    return asdict(info)


def _match(m: Match) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "score": m.score}
    if m.values is not None:
        out["values"] = m.values
    if m.metadata is not None:
        out["metadata"] = m.metadata
    return out


def _record(r: VectorRecord) -> dict[str, Any]:
    return {"id": r.id, "values": r.values, "metadata": r.metadata}


def memory_router(store: MemoryStore) -> APIRouter:
    router = APIRouter(prefix="/v1/memory", tags=["memory"])

    @router.post("/namespaces")
    async def create_namespace(body: CreateNamespace, workspace_id: WorkspaceId, response: Response) -> dict[str, Any]:
        options: dict[str, Any] = {"dimension": body.dimension, "metric": body.metric,
                                   "embedding_model": body.embedding_model}
        if (body.name is None) == (body.template is None):
            raise InvalidRequest("give exactly one of name or template", field="name")
        if body.template is not None:
            info, created = await store.create_from_template(workspace_id, body.template, body.variables, **options)
        else:
            if body.variables:
                raise InvalidRequest("variables go with a template", field="variables")
            info, created = await store.create_namespace(workspace_id, body.name or "", **options)
        response.status_code = 201 if created else 200
        return _namespace(info)

    @router.get("/namespaces")
    async def list_namespaces(workspace_id: WorkspaceId) -> dict[str, Any]:
        return {"namespaces": [_namespace(i) for i in await store.list_namespaces(workspace_id)]}

    @router.get("/namespaces/{namespace}")
    async def describe(namespace: str, workspace_id: WorkspaceId) -> dict[str, Any]:
        return _namespace(await store.describe(workspace_id, namespace))

    @router.delete("/namespaces/{namespace}", status_code=204)
    async def delete_namespace(namespace: str, workspace_id: WorkspaceId) -> Response:
        await store.delete_namespace(workspace_id, namespace)
        return Response(status_code=204)

    @router.put("/namespaces/{namespace}/vectors")
    async def upsert(namespace: str, body: UpsertBody, workspace_id: WorkspaceId) -> dict[str, Any]:
        items = [UpsertItem(id=i.id, values=i.values, text=i.text, metadata=i.metadata) for i in body.vectors]
        return {"upserted_count": await store.upsert(workspace_id, namespace, items)}

    @router.post("/namespaces/{namespace}/query")
    async def query(namespace: str, body: QueryBody, workspace_id: WorkspaceId) -> dict[str, Any]:
        matches = await store.query(workspace_id, namespace, vector=body.vector, text=body.text, id=body.id,
                                    top_k=body.top_k, filter=body.filter, include_values=body.include_values,
                                    include_metadata=body.include_metadata)
        return {"namespace": namespace, "matches": [_match(m) for m in matches]}

    @router.post("/namespaces/{namespace}/fetch")
    async def fetch(namespace: str, body: FetchBody, workspace_id: WorkspaceId) -> dict[str, Any]:
        records = await store.fetch(workspace_id, namespace, body.ids)
        return {"namespace": namespace, "vectors": [_record(r) for r in records]}

    @router.post("/namespaces/{namespace}/delete")
    async def delete(namespace: str, body: DeleteBody, workspace_id: WorkspaceId) -> dict[str, Any]:
        await store.delete(workspace_id, namespace, ids=body.ids, filter=body.filter)
        return {"namespace": namespace, "deleted": True}

    return router
