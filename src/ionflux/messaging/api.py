"""HTTP surface of the WhatsApp channel: numbers, messages, consent, templates (thin: rules live in service.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request, Response

from ionflux.core.auth import WorkspaceId
from ionflux.messaging.consent import ConsentInput
from ionflux.messaging.numbers import NumberInput
from ionflux.messaging.service import WhatsAppService
from ionflux.messaging.templates import TemplateCatalogue, TemplateInput
from ionflux.messaging.validation import SendRequest, normalise_wa_id

router = APIRouter(prefix="/v1/whatsapp", tags=["whatsapp"])
WaId = Path(min_length=7, max_length=16, description="the user's phone number (E.164, digits)")


def _service(request: Request) -> WhatsAppService:
    service: WhatsAppService = request.app.state.platform.services["messaging"].whatsapp
    return service


def _templates(request: Request) -> TemplateCatalogue:
    catalogue: TemplateCatalogue = request.app.state.platform.services["messaging"].templates
    return catalogue


@router.post("/numbers", status_code=201)
async def add_number(body: NumberInput, workspace_id: WorkspaceId, request: Request,
                     response: Response) -> dict[str, Any]:
    number, created = await _service(request).numbers.add(workspace_id, body)
    if not created:
        response.status_code = 200
    return number.view()


@router.get("/numbers")
async def list_numbers(workspace_id: WorkspaceId, request: Request) -> dict[str, Any]:
    return {"data": [n.view() for n in await _service(request).numbers.list(workspace_id)]}


@router.post("/messages", status_code=201)
async def send_message(body: SendRequest, workspace_id: WorkspaceId, request: Request) -> dict[str, Any]:
    return await _service(request).send(workspace_id, body)


@router.get("/messages/{message_id}")
async def get_message(message_id: str, workspace_id: WorkspaceId, request: Request) -> dict[str, Any]:
    return await _service(request).get(workspace_id, message_id)


@router.put("/contacts/{wa_id}/consent")
async def put_consent(body: ConsentInput, workspace_id: WorkspaceId, request: Request,
                      wa_id: str = WaId) -> dict[str, Any]:
    return await _service(request).opt_in(workspace_id, normalise_wa_id(wa_id, "wa_id"), body)


@router.get("/contacts/{wa_id}/consent")
async def get_consent(workspace_id: WorkspaceId, request: Request, wa_id: str = WaId) -> dict[str, Any]:
    return await _service(request).get_consent(workspace_id, normalise_wa_id(wa_id, "wa_id"))


@router.delete("/contacts/{wa_id}/consent")
async def delete_consent(workspace_id: WorkspaceId, request: Request, wa_id: str = WaId) -> dict[str, Any]:
    """Withdraws consent: recorded as an opt-out (kept, so the record of what happened stays)."""
    return await _service(request).opt_out(workspace_id, normalise_wa_id(wa_id, "wa_id"))


@router.get("/templates")
async def list_templates(workspace_id: WorkspaceId, request: Request,
                         waba_id: str | None = Query(default=None)) -> dict[str, Any]:
    return await _templates(request).list(workspace_id, waba_id)


@router.post("/templates", status_code=201)
async def create_template(body: TemplateInput, workspace_id: WorkspaceId, request: Request) -> dict[str, Any]:
    return await _templates(request).create(workspace_id, body)


@router.delete("/templates/{name}", status_code=204)
async def delete_template(name: str, workspace_id: WorkspaceId, request: Request,
                          waba_id: str | None = Query(default=None)) -> Response:
    await _templates(request).delete(workspace_id, name, waba_id)
    return Response(status_code=204)
