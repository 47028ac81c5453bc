"""Checks an outbound WhatsApp message against Meta's documented limits and builds the Graph API body.

Everything is refused here, before Meta is called, with a 400 naming the field (`interactive.action.buttons[3]`).
Limits come from API_FACTS §2 (buttons ≤3, title ≤20, id ≤256; body ≤1024 and footer ≤60, secondary) and
from Meta's list-message page (≤10 sections, ≤10 rows in all); row title ≤24, description ≤72, row id ≤200,
list button ≤20 and text body ≤4096 are secondary sources (Meta's Node SDK types, whatsapp-api-js).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ionflux.core.errors import InvalidRequest

WA_ID = re.compile(r"^\+?[1-9]\d{6,14}$")  # E.164, with or without the +
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MEDIA_TYPES = ("image", "video", "document")
TEXT_MAX, BODY_MAX, FOOTER_MAX, HEADER_TEXT_MAX = 4096, 1024, 60, 60
BUTTONS_MAX, BUTTON_TITLE_MAX, BUTTON_ID_MAX = 3, 20, 256
SECTIONS_MAX, ROWS_MAX, ROW_TITLE_MAX, ROW_DESCRIPTION_MAX, ROW_ID_MAX = 10, 10, 24, 72, 200
LIST_BUTTON_MAX, SECTION_TITLE_MAX = 20, 24


class SendRequest(BaseModel):
    """`POST /v1/whatsapp/messages`: the type objects are Meta's own shapes (text, template, interactive)."""

    model_config = ConfigDict(extra="forbid")
    phone_number_id: str | None = Field(default=None, description="sending number; optional if there is one")
    to: str
    type: Literal["text", "template", "interactive"]
    text: dict[str, Any] | None = None
    template: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None
    context: dict[str, Any] | None = None


def normalise_wa_id(value: str, field: str = "to") -> str:
    """Meta accepts E.164 with or without '+'; we key contacts by the digits (what webhooks call wa_id)."""
    cleaned = value.strip().replace(" ", "").replace("-", "")
    if not WA_ID.match(cleaned):
        raise InvalidRequest(f"{field} must be a phone number in E.164 form (country code first, 7-15 digits)",
                             field=field)
    return cleaned.lstrip("+")


def graph_message(req: SendRequest) -> dict[str, Any]:
    """The Graph API body for `req`, or InvalidRequest naming the first field that breaks a rule."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "to": normalise_wa_id(req.to), "type": req.type}
    for other in ("text", "template", "interactive"):
        if other != req.type and getattr(req, other) is not None:
            raise InvalidRequest(f"{other} is given but type is {req.type!r}", field=other)
    content = getattr(req, req.type)
    if not isinstance(content, dict):
        raise InvalidRequest(f"type {req.type!r} needs a {req.type} object", field=req.type)
    if req.type == "text":
        body["text"] = _text(content)
    elif req.type == "template":
        body["template"] = _template(content)
    else:
        body["interactive"] = _interactive(content)
    if req.context is not None:
        message_id = req.context.get("message_id")
        if set(req.context) != {"message_id"} or not _str(message_id, 255):
            raise InvalidRequest("context must be {\"message_id\": \"wamid...\"} (the message replied to)",
                                 field="context.message_id")
        body["context"] = {"message_id": message_id}
    return body


# -- text ------------------------------------------------------------------------------------------

def _text(text: dict[str, Any]) -> dict[str, Any]:
    _only(text, {"body", "preview_url"}, "text")
    _need_str(text.get("body"), TEXT_MAX, "text.body")
    preview = text.get("preview_url", False)
    if not isinstance(preview, bool):
        raise InvalidRequest("text.preview_url must be true or false", field="text.preview_url")
    return {"preview_url": preview, "body": text["body"]}


# -- template --------------------------------------------------------------------------------------

def _template(template: dict[str, Any]) -> dict[str, Any]:
    _only(template, {"name", "language", "components"}, "template")
    name = template.get("name")
    if not isinstance(name, str) or not TEMPLATE_NAME.match(name):
        raise InvalidRequest("template.name must be 1-512 lowercase letters, digits or '_'", field="template.name")
    language = template.get("language")
    code = language.get("code") if isinstance(language, dict) else language
    if not isinstance(code, str) or not LANGUAGE.match(code):
        raise InvalidRequest("template.language.code must be a language code such as 'en_US'",
                             field="template.language.code")
    out: dict[str, Any] = {"name": name, "language": {"code": code}}
    components = template.get("components", [])
    if not isinstance(components, list):
        raise InvalidRequest("template.components must be a list", field="template.components")
    if components:
        out["components"] = [_component(c, f"template.components[{i}]") for i, c in enumerate(components)]
    return out


def _component(component: Any, at: str) -> dict[str, Any]:
    if not isinstance(component, dict):
        raise InvalidRequest(f"{at} must be an object", field=at)
    kind = component.get("type")
    params = component.get("parameters", [])
    if not isinstance(params, list):
        raise InvalidRequest(f"{at}.parameters must be a list", field=f"{at}.parameters")
    if kind == "header":
        _only(component, {"type", "parameters"}, at)
        allowed: tuple[str, ...] = ("text", *MEDIA_TYPES)
    elif kind == "body":
        _only(component, {"type", "parameters"}, at)
        allowed = ("text", "currency", "date_time")
    elif kind == "button":
        _only(component, {"type", "sub_type", "index", "parameters"}, at)
        return _button_component(component, params, at)
    else:
        raise InvalidRequest(f"{at}.type must be header, body or button", field=f"{at}.type")
    return {"type": kind, "parameters": [_parameter(p, allowed, f"{at}.parameters[{i}]") for i, p in enumerate(params)]}


def _button_component(component: dict[str, Any], params: list[Any], at: str) -> dict[str, Any]:
    sub_type = component.get("sub_type")
    if sub_type not in ("quick_reply", "url", "copy_code"):
        raise InvalidRequest(f"{at}.sub_type must be quick_reply, url or copy_code", field=f"{at}.sub_type")
    index = component.get("index")
    if not (isinstance(index, str | int) and str(index).isdigit() and 0 <= int(index) <= 9):
        raise InvalidRequest(f"{at}.index must be the button's position, '0' to '9'", field=f"{at}.index")
    allowed = {"quick_reply": ("payload", "text"), "url": ("text",), "copy_code": ("coupon_code",)}[sub_type]
    built = [_parameter(p, allowed, f"{at}.parameters[{i}]") for i, p in enumerate(params)]
    return {"type": "button", "sub_type": sub_type, "index": str(index), "parameters": built}


def _parameter(param: Any, allowed: tuple[str, ...], at: str) -> dict[str, Any]:
    if not isinstance(param, dict) or param.get("type") not in allowed:
        raise InvalidRequest(f"{at}.type must be one of {', '.join(allowed)}", field=f"{at}.type")
    kind = param["type"]
    _only(param, {"type", kind}, at)
    value = param.get(kind)
    if kind in ("text", "payload", "coupon_code"):
        _need_str(value, 32768 if kind == "text" else 1024, f"{at}.{kind}")
        return {"type": kind, kind: value}
    if kind == "currency":
        return {"type": kind, kind: _currency(value, f"{at}.currency")}
    if kind == "date_time":
        if not isinstance(value, dict) or not _str(value.get("fallback_value"), 1024):
            raise InvalidRequest(f"{at}.date_time needs a fallback_value", field=f"{at}.date_time.fallback_value")
        return {"type": kind, kind: {"fallback_value": value["fallback_value"]}}
    return {"type": kind, kind: _media(value, f"{at}.{kind}")}


def _currency(value: Any, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{at} must be {{fallback_value, code, amount_1000}}", field=at)
    _only(value, {"fallback_value", "code", "amount_1000"}, at)
    _need_str(value.get("fallback_value"), 1024, f"{at}.fallback_value")
    if not isinstance(value.get("code"), str) or not CURRENCY.match(value["code"]):
        raise InvalidRequest(f"{at}.code must be an ISO 4217 code such as 'USD'", field=f"{at}.code")
    amount = value.get("amount_1000")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidRequest(f"{at}.amount_1000 must be an integer (the amount times 1000)", field=f"{at}.amount_1000")
    return {"fallback_value": value["fallback_value"], "code": value["code"], "amount_1000": amount}


def _media(value: Any, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{at} must be an object with a link or an id", field=at)
    _only(value, {"link", "id", "caption", "filename"}, at)
    link, media_id = value.get("link"), value.get("id")
    if (link is None) == (media_id is None):
        raise InvalidRequest(f"{at} needs exactly one of link (https URL) or id (uploaded media)", field=at)
    if link is not None and not (isinstance(link, str) and re.match(r"^https?://[^\s/]+", link)):
        raise InvalidRequest(f"{at}.link must be an http(s) URL", field=f"{at}.link")
    if media_id is not None and not _str(media_id, 255):
        raise InvalidRequest(f"{at}.id must be a media id", field=f"{at}.id")
    out = {k: v for k, v in value.items() if v is not None}
    for extra in ("caption", "filename"):
        if extra in out and not _str(out[extra], 1024):
            raise InvalidRequest(f"{at}.{extra} must be a string of at most 1024 characters", field=f"{at}.{extra}")
    return out


# -- interactive -----------------------------------------------------------------------------------

def _interactive(inter: dict[str, Any]) -> dict[str, Any]:
    kind = inter.get("type")
    if kind not in ("button", "list"):
        raise InvalidRequest("interactive.type must be button (reply buttons) or list", field="interactive.type")
    _only(inter, {"type", "header", "body", "footer", "action"}, "interactive")
    out: dict[str, Any] = {"type": kind, "body": {"text": _text_object(inter.get("body"), BODY_MAX, "body")}}
    if inter.get("footer") is not None:
        out["footer"] = {"text": _text_object(inter["footer"], FOOTER_MAX, "footer")}
    if inter.get("header") is not None:
        out["header"] = _header(inter["header"], list_message=kind == "list")
    action = inter.get("action")
    if not isinstance(action, dict):
        raise InvalidRequest("interactive.action is required", field="interactive.action")
    out["action"] = _buttons(action) if kind == "button" else _list(action)
    return out


def _text_object(value: Any, limit: int, name: str) -> str:
    at = f"interactive.{name}.text"
    if not isinstance(value, dict):
        raise InvalidRequest(f"interactive.{name} must be {{\"text\": ...}}", field=at)
    _only(value, {"text"}, f"interactive.{name}")
    return _need_str(value.get("text"), limit, at)


def _header(header: Any, *, list_message: bool) -> dict[str, Any]:
    at = "interactive.header"
    kinds = ("text",) if list_message else ("text", *MEDIA_TYPES)
    if not isinstance(header, dict) or header.get("type") not in kinds:
        raise InvalidRequest(f"{at}.type must be {' or '.join(kinds)}", field=f"{at}.type")
    kind = header["type"]
    _only(header, {"type", kind}, at)
    if kind == "text":
        return {"type": "text", "text": _need_str(header.get("text"), HEADER_TEXT_MAX, f"{at}.text")}
    return {"type": kind, kind: _media(header.get(kind), f"{at}.{kind}")}


def _buttons(action: dict[str, Any]) -> dict[str, Any]:
    _only(action, {"buttons"}, "interactive.action")
    buttons = action.get("buttons")
    at = "interactive.action.buttons"
    if not isinstance(buttons, list) or not buttons:
        raise InvalidRequest(f"{at} must list 1 to {BUTTONS_MAX} reply buttons", field=at)
    if len(buttons) > BUTTONS_MAX:
        raise InvalidRequest(f"at most {BUTTONS_MAX} reply buttons ({len(buttons)} given)",
                             field=f"{at}[{BUTTONS_MAX}]")
    built, ids, titles = [], set(), set()
    for i, button in enumerate(buttons):
        reply = button.get("reply") if isinstance(button, dict) else None
        if not isinstance(button, dict) or button.get("type") != "reply" or not isinstance(reply, dict):
            raise InvalidRequest(f"{at}[{i}] must be {{type: reply, reply: {{id, title}}}}", field=f"{at}[{i}]")
        button_id = _need_str(reply.get("id"), BUTTON_ID_MAX, f"{at}[{i}].reply.id")
        title = _need_str(reply.get("title"), BUTTON_TITLE_MAX, f"{at}[{i}].reply.title")
        if button_id in ids or title in titles:
            raise InvalidRequest("reply button ids and titles must be unique", field=f"{at}[{i}].reply")
        ids.add(button_id)
        titles.add(title)
        built.append({"type": "reply", "reply": {"id": button_id, "title": title}})
    return {"buttons": built}


def _list(action: dict[str, Any]) -> dict[str, Any]:
    _only(action, {"button", "sections"}, "interactive.action")
    at = "interactive.action"
    button = _need_str(action.get("button"), LIST_BUTTON_MAX, f"{at}.button")
    sections = action.get("sections")
    if not isinstance(sections, list) or not sections:
        raise InvalidRequest(f"{at}.sections must list 1 to {SECTIONS_MAX} sections", field=f"{at}.sections")
    if len(sections) > SECTIONS_MAX:
        raise InvalidRequest(f"at most {SECTIONS_MAX} sections", field=f"{at}.sections[{SECTIONS_MAX}]")
    built, ids, total = [], set(), 0
    for s, section in enumerate(sections):
        where = f"{at}.sections[{s}]"
        rows = section.get("rows") if isinstance(section, dict) else None
        if not isinstance(rows, list) or not rows:
            raise InvalidRequest(f"{where}.rows must list at least one row", field=f"{where}.rows")
        out: dict[str, Any] = {}
        title = section.get("title")
        if title is not None or len(sections) > 1:
            out["title"] = _need_str(title, SECTION_TITLE_MAX, f"{where}.title")  # required with several sections
        out["rows"] = []
        for r, row in enumerate(rows):
            total += 1
            if total > ROWS_MAX:
                raise InvalidRequest(f"at most {ROWS_MAX} rows across all sections", field=f"{where}.rows[{r}]")
            if not isinstance(row, dict):
                raise InvalidRequest(f"{where}.rows[{r}] must be an object", field=f"{where}.rows[{r}]")
            _only(row, {"id", "title", "description"}, f"{where}.rows[{r}]")
            row_id = _need_str(row.get("id"), ROW_ID_MAX, f"{where}.rows[{r}].id")
            if row_id in ids:
                raise InvalidRequest("row ids must be unique", field=f"{where}.rows[{r}].id")
            ids.add(row_id)
            item = {"id": row_id, "title": _need_str(row.get("title"), ROW_TITLE_MAX, f"{where}.rows[{r}].title")}
            if row.get("description") is not None:
                item["description"] = _need_str(row["description"], ROW_DESCRIPTION_MAX,
                                                 f"{where}.rows[{r}].description")
            out["rows"].append(item)
        built.append(out)
    return {"button": button, "sections": built}


# -- helpers ---------------------------------------------------------------------------------------

def _str(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value.strip()) and len(value) <= limit


def _need_str(value: Any, limit: int, at: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{at} is required (a non-empty string)", field=at)
    if len(value) > limit:
        raise InvalidRequest(f"{at} is {len(value)} characters; the limit is {limit}", field=at)
    return value


def _only(value: dict[str, Any], allowed: set[str], at: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidRequest(f"{at}: unknown field {unknown[0]!r}", field=f"{at}.{unknown[0]}")
