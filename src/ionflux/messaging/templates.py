"""Message templates, proxied to the WABA's `message_templates` edge and cached locally with their status
(kept current by GETs and by the `message_template_status_update` webhook, see inbound.py)."""

from __future__ import annotations

import builtins
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select

from ionflux.core.errors import InvalidRequest, ProviderUnavailable
from ionflux.core.platform import Platform
from ionflux.messaging.models import WaTemplate
from ionflux.messaging.numbers import NumberDirectory
from ionflux.messaging.validation import LANGUAGE, TEMPLATE_NAME
from ionflux.messaging.whatsapp import WhatsAppCloudClient

COMPONENT_TYPES = ("HEADER", "BODY", "FOOTER", "BUTTONS")
HEADER_FORMATS = ("TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION")


class TemplateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    waba_id: str | None = Field(default=None, description="default: the business account of your number")
    name: str
    language: str
    category: Literal["MARKETING", "UTILITY", "AUTHENTICATION"]
    components: list[dict[str, Any]]
    allow_category_change: bool | None = None


def check_template(given: TemplateInput) -> dict[str, Any]:
    """Meta's rules we can check locally: the name, the language code, the component types, one BODY."""
    if not TEMPLATE_NAME.match(given.name):
        raise InvalidRequest("name must be 1-512 lowercase letters, digits or '_'", field="name")
    if not LANGUAGE.match(given.language):
        raise InvalidRequest("language must be a code such as 'en_US'", field="language")
    seen: set[str] = set()
    for i, component in enumerate(given.components):
        kind = str(component.get("type", "")).upper()
        if kind not in COMPONENT_TYPES:
            raise InvalidRequest(f"components[{i}].type must be one of {', '.join(COMPONENT_TYPES)}",
                                 field=f"components[{i}].type")
        if kind in seen:
            raise InvalidRequest(f"only one {kind} component is allowed", field=f"components[{i}].type")
        seen.add(kind)
        if kind in ("BODY", "FOOTER") and not (isinstance(component.get("text"), str) and component["text"].strip()):
            raise InvalidRequest(f"a {kind} component needs its text", field=f"components[{i}].text")
        if kind == "HEADER" and str(component.get("format", "")).upper() not in HEADER_FORMATS:
            raise InvalidRequest(f"components[{i}].format must be one of {', '.join(HEADER_FORMATS)}",
                                 field=f"components[{i}].format")
        if kind == "BUTTONS" and not (isinstance(component.get("buttons"), list) and component["buttons"]):
            raise InvalidRequest("a BUTTONS component needs a list of buttons", field=f"components[{i}].buttons")
    if "BODY" not in seen:
        raise InvalidRequest("a template needs a BODY component", field="components")
    body: dict[str, Any] = {"name": given.name, "language": given.language, "category": given.category,
                            "components": given.components}
    if given.allow_category_change is not None:
        body["allow_category_change"] = given.allow_category_change
    return body


def template_view(row: WaTemplate) -> dict[str, Any]:
    return {"id": row.meta_id, "waba_id": row.waba_id, "name": row.name, "language": row.language,
            "category": row.category, "status": row.status, "components": row.components, "reason": row.reason}


class TemplateCatalogue:
    def __init__(self, platform: Platform, numbers: NumberDirectory, cloud: WhatsAppCloudClient) -> None:
        self.platform, self.numbers, self.cloud = platform, numbers, cloud

    async def list(self, workspace_id: str, waba_id: str | None) -> dict[str, Any]:
        number = await self.numbers.by_waba(workspace_id, waba_id)
        token = await self.numbers.token(workspace_id, number)
        try:
            remote = await self.cloud.list_templates(number.waba_id, token)
        except ProviderUnavailable:
            return {"data": await self._cached(workspace_id, number.waba_id), "stale": True}
        async with self.platform.db.tenant(workspace_id) as session:
            await session.execute(delete(WaTemplate).where(WaTemplate.waba_id == number.waba_id)
                                  .execution_options(synchronize_session=False))
            rows = []
            for item in remote:
                row = WaTemplate(waba_id=number.waba_id, meta_id=str(item.get("id") or "") or None,
                                 name=str(item.get("name", "")), language=str(item.get("language", "")),
                                 category=str(item.get("category", "")), status=str(item.get("status", "")),
                                 components=item.get("components") or [], reason=item.get("rejected_reason"))
                session.add(row)
                rows.append(row)
            return {"data": [template_view(r) for r in rows], "stale": False}

    async def _cached(self, workspace_id: str, waba_id: str) -> builtins.list[dict[str, Any]]:
        async with self.platform.db.tenant(workspace_id) as session:
            rows = (await session.scalars(select(WaTemplate).where(WaTemplate.waba_id == waba_id)
                                          .order_by(WaTemplate.name))).all()
            return [template_view(r) for r in rows]

    async def create(self, workspace_id: str, given: TemplateInput) -> dict[str, Any]:
        body = check_template(given)
        number = await self.numbers.by_waba(workspace_id, given.waba_id)
        token = await self.numbers.token(workspace_id, number)
        created = await self.cloud.create_template(number.waba_id, token, body)
        async with self.platform.db.tenant(workspace_id) as session:
            row = await session.scalar(select(WaTemplate).where(
                WaTemplate.waba_id == number.waba_id, WaTemplate.name == given.name,
                WaTemplate.language == given.language))
            if row is None:
                row = WaTemplate(waba_id=number.waba_id, name=given.name, language=given.language)
                session.add(row)
            row.meta_id = str(created.get("id") or "") or None
            row.category = str(created.get("category") or given.category)
            row.status = str(created.get("status") or "PENDING")
            row.components, row.reason = given.components, None
            await session.flush()
            return template_view(row)

    async def delete(self, workspace_id: str, name: str, waba_id: str | None) -> None:
        if not TEMPLATE_NAME.match(name):
            raise InvalidRequest("name must be 1-512 lowercase letters, digits or '_'", field="name")
        number = await self.numbers.by_waba(workspace_id, waba_id)
        token = await self.numbers.token(workspace_id, number)
        await self.cloud.delete_template(number.waba_id, token, name)
        async with self.platform.db.tenant(workspace_id) as session:
            await session.execute(delete(WaTemplate).where(WaTemplate.waba_id == number.waba_id,
                                                           WaTemplate.name == name)
                                  .execution_options(synchronize_session=False))
