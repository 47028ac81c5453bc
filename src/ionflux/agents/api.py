"""HTTP surface of the agent bridge: definitions, configurations, runs (all workspace-scoped)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ionflux.agents.definitions import parse_definition
from ionflux.agents.models import AgentConfigurationRow, AgentRunRow, AgentStateRow
from ionflux.agents.store import (
    configuration_view,
    create_configuration,
    effective_config,
    get_configuration,
    get_definition,
    list_definitions,
    parse_yaml_config,
    put_definition,
    run_view,
)
from ionflux.core.auth import PlatformDep, WorkspaceId
from ionflux.core.errors import Conflict, InvalidRequest, NotFound

if TYPE_CHECKING:
    from ionflux.agents.service_plugin import AgentService

router = APIRouter(prefix="/v1/agents", tags=["agents"])
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


def _service(platform: PlatformDep) -> AgentService:
    return platform.services["agents"]  # type: ignore[return-value]


ServiceDep = Annotated["AgentService", Depends(_service)]


@router.put("/definitions/{definition_id}")
async def put_definition_endpoint(
    definition_id: str, request: Request, response: Response, workspace_id: WorkspaceId, service: ServiceDep,
) -> dict[str, Any]:
    """Store a definition from its blueprint form: YAML (`Content-Type: application/yaml`) or JSON."""
    body = await request.body()
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind in _YAML_TYPES:
        source: Any = body
    else:
        try:
            source = json.loads(body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequest(f"malformed JSON body: {exc}", field="body") from None
        if isinstance(source, dict) and set(source) == {"yaml"} and isinstance(source["yaml"], str):
            source = source["yaml"]
    if isinstance(source, dict):
        source.setdefault("id", definition_id)
    definition = parse_definition(source)
    if definition.id != definition_id:
        raise InvalidRequest(f"the body's id {definition.id!r} differs from the path's {definition_id!r}", field="id")
    async with service.platform.db.tenant(workspace_id) as session:
        created = await put_definition(session, service.registry, definition)
    service.triggers.ensure(definition.event_topics)
    response.status_code = 201 if created else 200
    return definition.document()


@router.get("/definitions/{definition_id}")
async def get_definition_endpoint(definition_id: str, workspace_id: WorkspaceId, service: ServiceDep) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        definition = await get_definition(session, service.registry, definition_id)
    return {**definition.document(), "builtin": service.registry.builtin(definition_id) is not None}


@router.get("/definitions")
async def list_definitions_endpoint(workspace_id: WorkspaceId, service: ServiceDep) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        definitions = await list_definitions(session, service.registry)
    return {"definitions": [{**d.document(), "builtin": service.registry.builtin(d.id) is not None}
                            for d in definitions]}


class ConfigurationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition_id: str = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    brand_id: str | None = Field(default=None, min_length=1, max_length=64)
    yaml_config: str | dict[str, Any] | None = Field(
        default=None, description="values for the definition's inputs: YAML text or a JSON object")


class ConfigurationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    yaml_config: str | dict[str, Any] | None = None
    status: Literal["active", "paused"] | None = None


@router.post("/configurations", status_code=201)
async def create_configuration_endpoint(
    body: ConfigurationCreate, workspace_id: WorkspaceId, service: ServiceDep,
) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        definition = await get_definition(session, service.registry, body.definition_id)
        row = await create_configuration(
            session, definition, workspace_id=workspace_id, name=body.name, yaml_config=body.yaml_config,
            brand_id=body.brand_id, resolve=service.namespace_resolver())
        return configuration_view(row)


@router.get("/configurations")
async def list_configurations_endpoint(
    workspace_id: WorkspaceId, service: ServiceDep,
    definition_id: str | None = Query(default=None), status: Literal["active", "paused"] | None = Query(default=None),
) -> dict[str, Any]:
    query = select(AgentConfigurationRow).order_by(AgentConfigurationRow.created_at)
    if definition_id:
        query = query.where(AgentConfigurationRow.definition_id == definition_id)
    if status:
        query = query.where(AgentConfigurationRow.status == status)
    async with service.platform.db.tenant(workspace_id) as session:
        rows = (await session.scalars(query)).all()
    return {"configurations": [configuration_view(r) for r in rows]}


@router.get("/configurations/{configuration_id}")
async def get_configuration_endpoint(
    configuration_id: str, workspace_id: WorkspaceId, service: ServiceDep,
) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        return configuration_view(await get_configuration(session, configuration_id))


@router.patch("/configurations/{configuration_id}")
async def patch_configuration_endpoint(
    configuration_id: str, body: ConfigurationPatch, workspace_id: WorkspaceId, service: ServiceDep,
) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        row = await get_configuration(session, configuration_id)
        if body.name is not None:
            row.name = body.name
        if "yaml_config" in body.model_fields_set:
            definition = await get_definition(session, service.registry, row.definition_id)
            text, values = parse_yaml_config(body.yaml_config)
            row.effective_config, row.yaml_config = effective_config(definition, values), text
            row.definition_version = definition.version
        if body.status == "active" and row.status != "active":
            row.status, row.paused_reason, row.consecutive_failures = "active", None, 0
        elif body.status == "paused" and row.status != "paused":
            row.status, row.paused_reason = "paused", "paused by request"
        await session.flush()
        view = configuration_view(row)
    service.executor.wake()
    return view


@router.delete("/configurations/{configuration_id}", status_code=204)
async def delete_configuration_endpoint(
    configuration_id: str, workspace_id: WorkspaceId, service: ServiceDep,
) -> Response:
    async with service.platform.db.tenant(workspace_id) as session:
        await session.delete(await get_configuration(session, configuration_id))
    return Response(status_code=204)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any] = Field(default_factory=dict, description="given to the agent as trigger.input")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=100,
                                        description="a second request with the same key returns the first run")


@router.post("/configurations/{configuration_id}/run", status_code=202)
async def run_configuration_endpoint(
    configuration_id: str, workspace_id: WorkspaceId, service: ServiceDep, response: Response,
    body: RunRequest | None = None,
    wait: bool = Query(default=False, description="answer when the run has finished (up to a limit)"),
) -> dict[str, Any]:
    body = body or RunRequest()
    async with service.platform.db.tenant(workspace_id) as session:
        row = await get_configuration(session, configuration_id)
        if row.status != "active":
            raise Conflict(f"configuration {configuration_id!r} is {row.status} ({row.paused_reason}); "
                           "PATCH its status to active to resume it", field="status")
    run = await service.run_now(workspace_id, configuration_id, body.input, body.idempotency_key, wait=wait)
    if run["status"] in ("succeeded", "failed", "skipped"):
        response.status_code = 200
    return run


@router.get("/configurations/{configuration_id}/runs")
async def list_runs_endpoint(
    configuration_id: str, workspace_id: WorkspaceId, service: ServiceDep,
    status: str | None = Query(default=None), limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        await get_configuration(session, configuration_id)
        query = select(AgentRunRow).where(AgentRunRow.configuration_id == configuration_id)
        if status:
            query = query.where(AgentRunRow.status == status)
        rows = (await session.scalars(query.order_by(AgentRunRow.created_at.desc()).limit(limit))).all()
    return {"runs": [run_view(r) for r in rows]}


@router.get("/runs/{run_id}")
async def get_run_endpoint(run_id: str, workspace_id: WorkspaceId, service: ServiceDep) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        row = await session.get(AgentRunRow, run_id)
        if row is None:
            raise NotFound(f"no agent run {run_id!r} in this workspace", field="run_id")
        return run_view(row)


# -- state, for agents that run in their own process (ionflux.client) -----------------------------

@router.get("/configurations/{configuration_id}/state")
async def list_state_endpoint(
    configuration_id: str, workspace_id: WorkspaceId, service: ServiceDep, prefix: str = Query(default=""),
) -> dict[str, Any]:
    async with service.platform.db.tenant(workspace_id) as session:
        await get_configuration(session, configuration_id)
        rows = (await session.scalars(select(AgentStateRow).where(
            AgentStateRow.configuration_id == configuration_id,
            AgentStateRow.key.startswith(prefix, autoescape=True)).order_by(AgentStateRow.key))).all()
    return {"items": [{"key": r.key, "value": r.value} for r in rows]}


class StateValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: dict[str, Any]


@router.put("/configurations/{configuration_id}/state/{key:path}")
async def put_state_endpoint(
    configuration_id: str, key: str, body: StateValue, workspace_id: WorkspaceId, service: ServiceDep,
) -> dict[str, Any]:
    if not 1 <= len(key) <= 200:
        raise InvalidRequest("a state key is 1-200 characters", field="key")
    async with service.platform.db.tenant(workspace_id) as session:
        await get_configuration(session, configuration_id)
        row = await session.get(AgentStateRow, (configuration_id, key))
        if row is None:
            session.add(AgentStateRow(configuration_id=configuration_id, key=key, value=body.value))
        else:
            row.value = body.value
    return {"key": key, "value": body.value}


@router.delete("/configurations/{configuration_id}/state/{key:path}", status_code=204)
async def delete_state_endpoint(
    configuration_id: str, key: str, workspace_id: WorkspaceId, service: ServiceDep,
) -> Response:
    async with service.platform.db.tenant(workspace_id) as session:
        await get_configuration(session, configuration_id)
        row = await session.get(AgentStateRow, (configuration_id, key))
        if row is not None:
            await session.delete(row)
    return Response(status_code=204)
