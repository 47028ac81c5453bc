"""HTTP: the workspace-scoped email API under /v1/email, and the public one-click unsubscribe endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from ionflux.core.auth import PlatformDep, WorkspaceId
from ionflux.core.errors import ServiceUnavailable
from ionflux.email import catalog, queries
from ionflux.email.schemas import (
    BatchRequest,
    BatchResult,
    SendRequest,
    SendResult,
    SettingsIn,
    SuppressionIn,
    TemplateIn,
)

if TYPE_CHECKING:
    from ionflux.email.service_plugin import EmailPlugin

router = APIRouter(prefix="/v1/email", tags=["email"])
public = APIRouter(prefix="/v1/email", tags=["email"])


def _email(platform: Any) -> EmailPlugin:
    plugin = platform.services.get("email")
    if plugin is None:
        raise ServiceUnavailable("the email service does not run in this process")
    return plugin  # type: ignore[no-any-return]


@router.post("/send", response_model=SendResult)
async def send(body: SendRequest, workspace_id: WorkspaceId, platform: PlatformDep) -> SendResult:
    return await _email(platform).service.send(workspace_id, body)


@router.post("/batch", response_model=BatchResult)
async def batch(body: BatchRequest, workspace_id: WorkspaceId, platform: PlatformDep) -> Response:
    result = await _email(platform).service.batch(workspace_id, body)
    # Serialised here in one pass: FastAPI would validate and dump 10,000 results again on their way out.
    return Response(result.model_dump_json(), media_type="application/json")


@router.get("/batches/{batch_id}", response_model=BatchResult)
async def get_batch(batch_id: str, workspace_id: WorkspaceId, platform: PlatformDep) -> BatchResult:
    return await _email(platform).service.batch_result(workspace_id, batch_id)


@router.get("/messages/{message_id}")
async def get_message(message_id: str, workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return await queries.get_message(session, message_id)


@router.get("/messages")
async def list_messages(
    workspace_id: WorkspaceId, platform: PlatformDep,
    tag: str | None = Query(default=None, max_length=64), status: str | None = Query(default=None, max_length=16),
    batch_id: str | None = Query(default=None, max_length=64), cursor: str | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return await queries.list_messages(session, tag=tag, status=status, batch_id=batch_id, cursor=cursor,
                                           limit=limit)


@router.put("/templates/{template_id}")
async def put_template(template_id: str, body: TemplateIn, workspace_id: WorkspaceId,
                       platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return await catalog.put_template(session, workspace_id, template_id, body)


@router.get("/templates/{template_id}")
async def get_template(template_id: str, workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return catalog.template_view(await catalog.get_template(session, workspace_id, template_id))


@router.get("/templates")
async def list_templates(workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return {"templates": await catalog.list_templates(session)}


@router.delete("/templates/{template_id}", status_code=204)
async def delete_template(template_id: str, workspace_id: WorkspaceId, platform: PlatformDep) -> Response:
    async with platform.db.tenant(workspace_id) as session:
        await session.delete(await catalog.get_template(session, workspace_id, template_id))
    return Response(status_code=204)


@router.get("/suppressions")
async def list_suppressions(
    workspace_id: WorkspaceId, platform: PlatformDep,
    reason: str | None = Query(default=None, max_length=32), email: str | None = Query(default=None, max_length=320),
    after: str | None = Query(default=None, max_length=320), limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return await catalog.list_suppressions(session, reason=reason, email=email, after=after, limit=limit)


@router.post("/suppressions", status_code=201)
async def add_suppression(body: SuppressionIn, workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        return await catalog.add_suppression(session, workspace_id, body)


@router.delete("/suppressions/{email}", status_code=204)
async def remove_suppression(email: str, workspace_id: WorkspaceId, platform: PlatformDep) -> Response:
    async with platform.db.tenant(workspace_id) as session:
        await catalog.remove_suppression(session, email)
    return Response(status_code=204)


@router.get("/settings")
async def get_settings(workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    return await _email(platform).settings_view(workspace_id)


@router.put("/settings")
async def put_settings(body: SettingsIn, workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    return await _email(platform).put_settings(workspace_id, body)


_PAGE = """<!doctype html><meta charset="utf-8"><title>Unsubscribe</title>
<form method="post"><p>Stop receiving these emails?</p><button type="submit">Unsubscribe</button></form>"""


@public.get("/unsubscribe/{token}", include_in_schema=False)
async def unsubscribe_page(token: str, platform: PlatformDep) -> HTMLResponse:
    """A GET only shows the button: link scanners open links, and must not unsubscribe anyone (RFC 8058)."""
    _email(platform).links().verify(token)
    return HTMLResponse(_PAGE)


@public.post("/unsubscribe/{token}", include_in_schema=False)
async def unsubscribe(token: str, request: Request, platform: PlatformDep) -> dict[str, Any]:
    """One-click (`List-Unsubscribe=One-Click` body, RFC 8058) or the page's button: no login, the token is signed."""
    return await _email(platform).events.unsubscribe(token)
