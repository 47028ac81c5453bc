"""Platform endpoints: health, metrics, and workspace administration."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from ionflux.core.auth import AdminDep, PlatformDep, WorkspaceId

router = APIRouter()


@router.get("/healthz", tags=["platform"])
async def healthz(platform: PlatformDep, response: Response) -> dict[str, Any]:
    checks: dict[str, str] = {}
    try:
        await platform.db.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "down"; the type is enough for an operator
        checks["database"] = f"down: {type(exc).__name__}"
    checks["bus"] = "ok" if platform.bus.healthy() else "down"
    healthy = all(v == "ok" for v in checks.values())
    response.status_code = 200 if healthy else 503
    answer: dict[str, Any] = {"status": "ok" if healthy else "degraded", "checks": checks}
    if platform.worker_status is not None:
        # Reported, not a check: while a worker restarts the API still answers and the outbox keeps its events.
        answer["worker"] = platform.worker_status()
    return answer


@router.get("/metrics", tags=["platform"], include_in_schema=False)
async def metrics(platform: PlatformDep) -> Response:
    return Response(generate_latest(platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


@router.post("/v1/workspaces", tags=["workspaces"], status_code=201)
async def create_workspace(body: WorkspaceCreate, platform: PlatformDep, _: AdminDep) -> dict[str, str]:
    created = await platform.workspaces.create(body.name)
    return {"id": created.id, "name": created.name, "token": created.token}


@router.get("/v1/workspace", tags=["workspaces"])
async def current_workspace(workspace_id: WorkspaceId) -> dict[str, str]:
    return {"id": workspace_id}
