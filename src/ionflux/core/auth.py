"""Bearer-token authentication: a workspace token acts for its workspace; the admin token for any."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ionflux.core.errors import AuthFailed, InvalidRequest, NotFound
from ionflux.core.platform import Platform

WORKSPACE_HEADER = "X-Ionflux-Workspace"


@dataclass(frozen=True)
class Principal:
    workspace_id: str | None  # None for the admin
    is_admin: bool = False


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def get_platform(request: Request) -> Platform:
    """`platform_of` as a dependency (async: FastAPI runs a sync one in its thread pool, a thread hop)."""
    return platform_of(request)


async def authenticate(request: Request, platform: Annotated[Platform, Depends(get_platform)]) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailed("missing or malformed Authorization header: expected 'Bearer <token>'")
    token = token.strip()
    admin = platform.settings.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return Principal(workspace_id=None, is_admin=True)
    workspace_id = await platform.workspaces.workspace_for_token(token)
    if workspace_id is None:
        raise AuthFailed("unknown or revoked API token")
    return Principal(workspace_id=workspace_id)


async def current_workspace(
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
    platform: Annotated[Platform, Depends(get_platform)],
) -> str:
    """The workspace this call acts for. The admin names it in the X-Ionflux-Workspace header."""
    if not principal.is_admin:
        assert principal.workspace_id is not None
        return principal.workspace_id
    workspace_id = request.headers.get(WORKSPACE_HEADER, "").strip()
    if not workspace_id:
        raise InvalidRequest(f"the admin token must name a workspace in the {WORKSPACE_HEADER} header",
                             field=WORKSPACE_HEADER)
    if not await platform.workspaces.exists(workspace_id):
        raise NotFound(f"unknown workspace {workspace_id!r}", field=WORKSPACE_HEADER)
    return workspace_id


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.is_admin:
        raise AuthFailed("this endpoint needs the admin token")
    return principal


WorkspaceId = Annotated[str, Depends(current_workspace)]
PlatformDep = Annotated[Platform, Depends(get_platform)]
AdminDep = Annotated[Principal, Depends(require_admin)]
