"""HTTP: the install flow under /integrations/shopify/auth, and the workspace API under /v1/shopify."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy import select

from ionflux.core.auth import PlatformDep, Principal, WorkspaceId, authenticate
from ionflux.core.errors import Forbidden, InvalidRequest, NotFound
from ionflux.core.models import Connection
from ionflux.core.platform import Platform
from ionflux.integrations.shopify.models import (
    ShopifyOrder,
    ShopifyProduct,
    ShopifyShop,
    ShopifySyncRun,
    ShopifyWorkspaceSettings,
)
from ionflux.integrations.shopify.service import ShopifyService
from ionflux.integrations.shopify.signing import validate_shop

auth_router = APIRouter(prefix="/integrations/shopify/auth", tags=["shopify"])
router = APIRouter(prefix="/v1/shopify", tags=["shopify"])


def service_of(platform: Platform) -> ShopifyService:
    service = platform.services.get("shopify")
    assert isinstance(service, ShopifyService)
    return service


@auth_router.get("/initiate")
async def initiate(platform: PlatformDep, principal: Annotated[Principal, Depends(authenticate)],
                   shop: str | None = None, workspace_id: str | None = None, brand_id: str | None = None,
                   user_id: str | None = None) -> RedirectResponse:
    """302 to the shop's consent page. The shop domain is checked before anything else."""
    validate_shop(shop)
    if principal.is_admin:
        if not workspace_id or not await platform.workspaces.exists(workspace_id):
            raise InvalidRequest("the admin token must name an existing workspace_id", field="workspace_id")
        ws = workspace_id
    else:
        assert principal.workspace_id is not None
        if workspace_id and workspace_id != principal.workspace_id:
            raise Forbidden("workspace_id is not the workspace of this token", field="workspace_id")
        ws = principal.workspace_id
    url = await service_of(platform).connector.initiate(ws, shop=shop, brand_id=brand_id, user_id=user_id)
    return RedirectResponse(url, status_code=302)


@auth_router.get("/callback")
async def callback(request: Request, platform: PlatformDep) -> dict[str, Any]:
    """Shopify redirects here: HMAC, state, shop and code are checked, then the shop is set up."""
    connection = await service_of(platform).connector.callback(list(request.query_params.multi_items()))
    return _connection_view(connection)


def _connection_view(conn: Connection) -> dict[str, Any]:
    meta = conn.meta or {}
    return {"id": conn.id, "shop": conn.external_id, "status": conn.status, "scopes": list(conn.scopes or []),
            "brand_id": (meta.get("oauth") or {}).get("url_vars", {}).get("brand_id") or None,
            "token_expires_at": conn.token_expires_at.isoformat() if conn.token_expires_at else None,
            "setup_error": meta.get("setup_error")}


async def _connection(platform: Platform, ws: str, connection_id: str) -> Connection:
    async with platform.db.tenant(ws) as session:
        conn = await session.get(Connection, connection_id)
    if conn is None or conn.provider != "shopify":
        raise NotFound(f"no Shopify connection {connection_id} in this workspace", field="connection_id")
    return conn


@router.get("/connections")
async def list_connections(ws: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(ws) as session:
        rows = (await session.scalars(select(Connection).where(Connection.provider == "shopify"))).all()
    return {"connections": [_connection_view(c) for c in rows]}


class SettingsBody(BaseModel):
    pii_enabled: bool


@router.put("/settings")
async def put_settings(body: SettingsBody, ws: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    """`pii_enabled`: customer fields in events and local copies (off by default)."""
    async with platform.db.tenant(ws) as session:
        row = await session.get(ShopifyWorkspaceSettings, ws)
        if row is None:
            session.add(ShopifyWorkspaceSettings(workspace_id=ws, pii_enabled=body.pii_enabled))
        else:
            row.pii_enabled = body.pii_enabled
    service_of(platform).pii.forget(ws)
    return {"pii_enabled": body.pii_enabled}


class SyncBody(BaseModel):
    kind: Literal["backfill", "reconcile"] = "backfill"


def _run_view(run: ShopifySyncRun) -> dict[str, Any]:
    return {"id": run.id, "connection_id": run.connection_id, "kind": run.kind, "status": run.status,
            "stage": run.stage, "pages": run.pages, "orders": run.orders, "products": run.products,
            "published": run.published, "error": run.error,
            "started_at": run.started_at.isoformat(), "finished_at": run.finished_at.isoformat()
            if run.finished_at else None}


@router.post("/connections/{connection_id}/sync", status_code=202)
async def start_sync(connection_id: str, ws: WorkspaceId, platform: PlatformDep,
                     body: SyncBody | None = None) -> dict[str, Any]:
    """Start (or resume from its checkpoint) a backfill or reconciliation; poll GET …/sync for progress."""
    service = service_of(platform)
    run = await service.sync.begin(ws, connection_id, (body or SyncBody()).kind)
    service.sync.launch(ws, run)
    return _run_view(run)


@router.get("/connections/{connection_id}/sync")
async def sync_status(connection_id: str, ws: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    await _connection(platform, ws, connection_id)
    async with platform.db.tenant(ws) as session:
        run = await session.scalar(select(ShopifySyncRun).where(ShopifySyncRun.connection_id == connection_id)
                                   .order_by(ShopifySyncRun.started_at.desc()).limit(1))
    if run is None:
        raise NotFound("this connection was never synced", field="connection_id")
    return _run_view(run)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest("since must be an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z",
                             field="since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/connections/{connection_id}/orders")
async def orders(connection_id: str, ws: WorkspaceId, platform: PlatformDep, since: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=250)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
                 ) -> dict[str, Any]:
    """Orders created at or after `since`, oldest first (typed records, decimal strings)."""
    moment = _since(since)
    await _connection(platform, ws, connection_id)
    query = select(ShopifyOrder).where(ShopifyOrder.connection_id == connection_id)
    if moment is not None:
        query = query.where(ShopifyOrder.created_at >= moment)
    async with platform.db.tenant(ws) as session:
        rows = (await session.scalars(query.order_by(ShopifyOrder.created_at, ShopifyOrder.shopify_id)
                                      .offset(offset).limit(limit + 1))).all()
    return {"orders": [r.data for r in rows[:limit]],
            "next_offset": offset + limit if len(rows) > limit else None}


@router.get("/connections/{connection_id}/products")
async def products(connection_id: str, ws: WorkspaceId, platform: PlatformDep,
                   limit: Annotated[int, Query(ge=1, le=250)] = 50, offset: Annotated[int, Query(ge=0)] = 0,
                   ) -> dict[str, Any]:
    await _connection(platform, ws, connection_id)
    async with platform.db.tenant(ws) as session:
        rows = (await session.scalars(select(ShopifyProduct).where(ShopifyProduct.connection_id == connection_id)
                                      .order_by(ShopifyProduct.shopify_id).offset(offset).limit(limit + 1))).all()
    return {"products": [r.data for r in rows[:limit]],
            "next_offset": offset + limit if len(rows) > limit else None}


@router.get("/connections/{connection_id}/shop")
async def shop(connection_id: str, ws: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    conn = await _connection(platform, ws, connection_id)
    async with platform.db.tenant(ws) as session:
        row = await session.get(ShopifyShop, connection_id)
    if row is None:
        raise NotFound("the shop was not fetched yet (see the connection's setup_error)", field="connection_id")
    return {"connection_id": conn.id, "shop": row.shop_domain, "name": row.name, "currency": row.currency,
            "iana_timezone": row.iana_timezone, "webhooks": row.webhooks, "status": conn.status}
