"""HTTP: the public receiver `/webhooks/{provider}[/{connection_id}]` (served directly), and the
workspace's operations API under `/v1/webhooks` (list deliveries, replay one)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import and_, or_, select

from ionflux.core.auth import PlatformDep, WorkspaceId
from ionflux.core.bus.envelope import format_time
from ionflux.core.bus.outbox import emit
from ionflux.core.errors import (
    AuthFailed,
    InvalidRequest,
    IonfluxError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from ionflux.core.models import OutboxEvent, new_id
from ionflux.core.webhooks.base import MalformedDelivery, SignatureInvalid, WebhookRejected, json_body
from ionflux.core.webhooks.models import DUPLICATE, RECEIVED, WebhookDelivery
from ionflux.core.webhooks.pipeline import WebhookIngestion

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Status = Literal["received", "published", "duplicate", "failed"]


def ingestion_for(request: Request) -> WebhookIngestion:
    """The app's pipeline, built on first use (tests may set `app.state.webhooks` beforehand)."""
    state = request.app.state
    pipeline: WebhookIngestion | None = getattr(state, "webhooks", None)
    if pipeline is None:
        pipeline = state.webhooks = WebhookIngestion(state.platform)
    return pipeline


def _http_error(exc: WebhookRejected) -> IonfluxError:
    if isinstance(exc, SignatureInvalid):
        return AuthFailed(exc.message)
    if exc.reason == "too_large":
        return PayloadTooLarge(exc.message)
    if isinstance(exc, MalformedDelivery):
        return InvalidRequest(exc.message)
    return ServiceUnavailable(exc.message)


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the webhook body exceeds {limit} bytes (setting IONFLUX_WEBHOOK_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_webhook(request: Request) -> Response:
    provider, connection_id = request.path_params["provider"], request.path_params.get("connection_id")
    pipeline = ingestion_for(request)
    handler = pipeline.provider(provider)
    try:
        body = await _read_body(request, pipeline.max_body_bytes)
    except PayloadTooLarge:
        pipeline.metrics.rejected.labels(handler.name, "too_large").inc()
        raise
    try:
        accepted = await pipeline.receive(handler, body, request.headers, connection_id)
    except WebhookRejected as exc:
        raise _http_error(exc) from None
    return JSONResponse({
        "status": "duplicate" if accepted.duplicate else "accepted",
        "deliveries": [{"id": s.id, "duplicate": s.event_id is None} for s in accepted.stored],
    })


async def webhook_handshake(request: Request) -> Response:
    provider, connection_id = request.path_params["provider"], request.path_params.get("connection_id")
    pipeline = ingestion_for(request)
    try:
        answer = await pipeline.handshake(pipeline.provider(provider), request.query_params, connection_id)
    except WebhookRejected as exc:
        raise _http_error(exc) from None
    if answer is None:
        return JSONResponse({"error": {"code": "METHOD_NOT_ALLOWED",
                                       "message": f"{provider} webhooks have no GET handshake"}}, status_code=405)
    return PlainTextResponse(answer.text, status_code=answer.status)


# The public receiver is a hot path (`PlatformService.hot_routes`): it takes no dependencies and
# authenticates by signature, so FastAPI's routing and dependency solving (about half of the request's
# own CPU) would buy it nothing.
receiver = APIRouter(tags=["webhooks"], include_in_schema=False)
for _path in ("/webhooks/{provider}", "/webhooks/{provider}/{connection_id}"):
    receiver.add_api_route(_path, receive_webhook, methods=["POST"])
    receiver.add_api_route(_path, webhook_handshake, methods=["GET"])
RECEIVER_ROUTES = tuple(f"{method} {path}" for path in ("/webhooks/{provider}", "/webhooks/{provider}/{connection_id}")
                        for method in ("POST", "GET"))


class DeliveryPage(BaseModel):
    deliveries: list[dict[str, Any]]
    next_cursor: str | None


class Replayed(BaseModel):
    id: str
    event_id: str
    replay_of: str


def _status(row: WebhookDelivery, outbox_status: str | None) -> str:
    if row.status == DUPLICATE:
        return "duplicate"
    return {"published": "published", "dead": "failed"}.get(outbox_status or "", "received")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _view(row: WebhookDelivery, outbox_status: str | None, include_body: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id, "provider": row.provider, "connection_id": row.connection_id, "account": row.account,
        "delivery_id": row.delivery_id, "topic": row.topic, "event_type": row.event_type, "event_id": row.event_id,
        "status": _status(row, outbox_status), "received_at": format_time(row.received_at),
        "headers": row.headers, "error": row.error, "replay_of": row.replay_of, "duplicate_of": row.duplicate_of,
    }
    if include_body:
        view["body"] = row.body.decode("utf-8", errors="replace")
    return view


def _cursor(row: WebhookDelivery) -> str:
    raw = json.dumps([format_time(row.received_at), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        moment, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return _utc(datetime.fromisoformat(moment.replace("Z", "+00:00"))), str(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRequest("cursor: not a cursor this endpoint returned", field="cursor") from None


_STATUS_FILTERS = {
    "duplicate": WebhookDelivery.status == DUPLICATE,
    "published": and_(WebhookDelivery.status == RECEIVED, OutboxEvent.status == "published"),
    "failed": and_(WebhookDelivery.status == RECEIVED, OutboxEvent.status == "dead"),
    "received": and_(WebhookDelivery.status == RECEIVED,
                     or_(OutboxEvent.status.is_(None), OutboxEvent.status == "pending")),
}


@router.get("/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    workspace_id: WorkspaceId,
    platform: PlatformDep,
    provider: str | None = Query(default=None, max_length=32),
    status: Status | None = Query(default=None),
    since: datetime | None = Query(default=None, description="received at or after (RFC 3339)"),
    until: datetime | None = Query(default=None, description="received before (RFC 3339)"),
    cursor: str | None = Query(default=None, description="next_cursor of the previous page"),
    limit: int = Query(default=50, ge=1, le=200),
    include_body: bool = Query(default=False),
) -> DeliveryPage:
    """Newest first."""
    query = (select(WebhookDelivery, OutboxEvent.status)
             .outerjoin(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
             .order_by(WebhookDelivery.received_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1))
    if provider:
        query = query.where(WebhookDelivery.provider == provider)
    if status:
        query = query.where(_STATUS_FILTERS[status])
    if since:
        query = query.where(WebhookDelivery.received_at >= _utc(since))
    if until:
        query = query.where(WebhookDelivery.received_at < _utc(until))
    if cursor:
        moment, row_id = _after(cursor)
        query = query.where(or_(WebhookDelivery.received_at < moment,
                                and_(WebhookDelivery.received_at == moment, WebhookDelivery.id < row_id)))
    async with platform.db.tenant(workspace_id) as session:
        rows = (await session.execute(query)).all()
    page = rows[:limit]
    return DeliveryPage(deliveries=[_view(r, s, include_body) for r, s in page],
                        next_cursor=_cursor(page[-1][0]) if len(rows) > limit else None)


@router.get("/deliveries/{delivery_id}")
async def get_delivery(delivery_id: str, workspace_id: WorkspaceId, platform: PlatformDep) -> dict[str, Any]:
    async with platform.db.tenant(workspace_id) as session:
        row = (await session.execute(
            select(WebhookDelivery, OutboxEvent.status)
            .outerjoin(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.id == delivery_id))).first()
    if row is None:
        raise NotFound(f"no webhook delivery {delivery_id!r} in this workspace", field="delivery_id")
    return _view(row[0], row[1], include_body=True)


@router.post("/deliveries/{delivery_id}/replay", status_code=202, response_model=Replayed)
async def replay_delivery(delivery_id: str, request: Request, workspace_id: WorkspaceId,
                          platform: PlatformDep) -> Replayed:
    """Publish the delivery's event again, under a new event id that references the original."""
    pipeline = ingestion_for(request)
    async with platform.db.tenant(workspace_id) as session:
        original = await session.get(WebhookDelivery, delivery_id)
        if original is not None and original.status == DUPLICATE and original.duplicate_of:
            original = await session.get(WebhookDelivery, original.duplicate_of)
        if original is None or original.event_type is None:
            raise NotFound(f"no webhook delivery {delivery_id!r} in this workspace", field="delivery_id")
        handler = pipeline.registry.get(original.provider)
        new = new_id()
        data = {"provider": original.provider, "topic": original.topic, "delivery_id": original.delivery_id,
                "account": original.account, "connection_id": original.connection_id,
                "payload": handler.payload(original.body) if handler else json_body(original.body),
                "webhook_delivery_id": new,
                "replay_of": {"webhook_delivery_id": original.id, "event_id": original.event_id}}
        event = emit(session, type=original.event_type, data=data, subject=original.account,
                     source=f"/webhooks/{original.provider}")
        session.add(WebhookDelivery(
            id=new, provider=original.provider, connection_id=original.connection_id, account=original.account,
            delivery_id=original.delivery_id, dedupe_key=None, topic=original.topic,
            event_type=original.event_type, event_id=event.id, status=RECEIVED, headers=original.headers,
            body=original.body, replay_of=original.id,
        ))
    return Replayed(id=new, event_id=event.id, replay_of=original.id)
