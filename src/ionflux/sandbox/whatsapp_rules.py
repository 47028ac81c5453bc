"""The Cloud API's checks on a send, as the WhatsApp simulator applies them (written from API_FACTS §2 and
Meta's list-message page, sharing no code with `ionflux.messaging`: it is the independent counterpart).

`check_message` returns None or a `GraphError` (HTTP status, Meta code, details), as Graph answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

INVALID_PARAMETER = 100
MISSING_PARAMETER = 131008
BAD_PARAMETER_VALUE = 131009
PARAMETER_COUNT = 132000
TEMPLATE_MISSING = 132001
TEMPLATE_PAUSED = 132015
TEMPLATE_DISABLED = 132016
REENGAGEMENT = 131047
THROUGHPUT = 130429
PAIR_RATE = 131056
TOKEN_INVALID = 190

_TO = re.compile(r"^\+?\d{7,15}$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")


@dataclass(frozen=True)
class GraphError:
    status: int
    code: int
    message: str
    details: str

    def body(self, trace: str) -> dict[str, Any]:
        return {"error": {"message": f"(#{self.code}) {self.message}", "type": "OAuthException", "code": self.code,
                          "error_data": {"messaging_product": "whatsapp", "details": self.details},
                          "fbtrace_id": trace}}


def invalid(details: str, code: int = BAD_PARAMETER_VALUE) -> GraphError:
    titles = {INVALID_PARAMETER: "Invalid parameter", MISSING_PARAMETER: "Required parameter is missing",
              BAD_PARAMETER_VALUE: "Parameter value is not valid"}
    return GraphError(400, code, titles.get(code, "Invalid parameter"), details)


def _length(value: Any, limit: int, what: str, *, required: bool = True) -> GraphError | None:
    if value is None:
        return invalid(f"{what} is required", MISSING_PARAMETER) if required else None
    if not isinstance(value, str) or (required and not value.strip()):
        return invalid(f"{what} must be a non-empty string")
    if len(value) > limit:
        return invalid(f"{what} must be at most {limit} characters")
    return None


def check_envelope(body: Any) -> GraphError | None:
    if not isinstance(body, dict):
        return invalid("the body must be a JSON object", INVALID_PARAMETER)
    if body.get("messaging_product") != "whatsapp":
        return invalid("messaging_product must be 'whatsapp'", INVALID_PARAMETER)
    if body.get("recipient_type", "individual") != "individual":
        return invalid("recipient_type must be 'individual'", INVALID_PARAMETER)
    if not isinstance(body.get("to"), str) or not _TO.match(body["to"]):
        return invalid("to must be a phone number", INVALID_PARAMETER)
    if body.get("type", "text") not in ("text", "template", "interactive"):
        return invalid(f"message type {body.get('type')!r} is not supported by this simulator", INVALID_PARAMETER)
    context = body.get("context")
    if context is not None and not (isinstance(context, dict) and isinstance(context.get("message_id"), str)):
        return invalid("context.message_id must be a message id")
    return None


def check_text(text: Any) -> GraphError | None:
    if not isinstance(text, dict):
        return invalid("text is required", MISSING_PARAMETER)
    if "preview_url" in text and not isinstance(text["preview_url"], bool):
        return invalid("text.preview_url must be a boolean")
    return _length(text.get("body"), 4096, "text.body")


def check_interactive(inter: Any) -> GraphError | None:
    if not isinstance(inter, dict) or inter.get("type") not in ("button", "list"):
        return invalid("interactive.type must be button or list", MISSING_PARAMETER)
    body, footer = inter.get("body"), inter.get("footer")
    problem = _length(body.get("text") if isinstance(body, dict) else None, 1024, "interactive.body.text")
    if problem or (footer is not None and (problem := _length(
            footer.get("text") if isinstance(footer, dict) else "", 60, "interactive.footer.text"))):
        return problem
    action = inter.get("action")
    if not isinstance(action, dict):
        return invalid("interactive.action is required", MISSING_PARAMETER)
    return _check_buttons(action) if inter["type"] == "button" else _check_list(action)


def _check_buttons(action: dict[str, Any]) -> GraphError | None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return invalid("interactive.action.buttons must hold 1 to 3 buttons")
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if not isinstance(reply, dict) or button.get("type") != "reply":
            return invalid("each button must be {type: reply, reply: {id, title}}")
        problem = _length(reply.get("title"), 20, "button title") or _length(reply.get("id"), 256, "button id")
        if problem:
            return problem
    return None


def _check_list(action: dict[str, Any]) -> GraphError | None:
    problem = _length(action.get("button"), 20, "interactive.action.button")
    if problem:
        return problem
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        return invalid("interactive.action.sections must hold 1 to 10 sections")
    rows = [row for s in sections if isinstance(s, dict) for row in (s.get("rows") or [])]
    if not 1 <= len(rows) <= 10:
        return invalid("a list message holds 1 to 10 rows across all sections")
    for row in rows:
        if not isinstance(row, dict):
            return invalid("rows must be objects")
        problem = (_length(row.get("id"), 200, "row id") or _length(row.get("title"), 24, "row title")
                   or _length(row.get("description"), 72, "row description", required=False))
        if problem:
            return problem
    return None


def check_template(sent: Any, stored: dict[str, Any] | None) -> GraphError | None:
    """`stored`: the WABA's template of that name and language, if any."""
    if not isinstance(sent, dict) or not isinstance(sent.get("name"), str):
        return invalid("template.name is required", MISSING_PARAMETER)
    if stored is None or stored["status"] in ("PENDING", "REJECTED"):
        return GraphError(404 if stored is None else 400, TEMPLATE_MISSING,
                          "Template name does not exist in the translation",
                          f"template name ({sent['name']}) does not exist in {_language(sent)}")
    if stored["status"] == "PAUSED":
        return GraphError(400, TEMPLATE_PAUSED, "Template is paused", "the template is paused for low quality")
    if stored["status"] == "DISABLED":
        return GraphError(400, TEMPLATE_DISABLED, "Template has been disabled", "the template is disabled")
    wanted = len(set(_PLACEHOLDER.findall(_body_text(stored))))
    given = [c for c in sent.get("components") or [] if isinstance(c, dict) and c.get("type") == "body"]
    params = given[0].get("parameters") or [] if given else []
    if len(params) != wanted:
        return GraphError(400, PARAMETER_COUNT, "Number of parameters does not match the expected number of params",
                          f"body: number of localizable_params ({len(params)}) does not match the expected "
                          f"number of params ({wanted})")
    for component in sent.get("components") or []:
        for param in component.get("parameters") or [] if isinstance(component, dict) else []:
            problem = _check_parameter(param)
            if problem:
                return problem
    return None


def _check_parameter(param: Any) -> GraphError | None:
    kind = param.get("type") if isinstance(param, dict) else None
    if kind == "currency":
        money = param.get("currency")
        if not (isinstance(money, dict) and isinstance(money.get("fallback_value"), str)
                and isinstance(money.get("code"), str) and isinstance(money.get("amount_1000"), int)):
            return invalid("currency needs fallback_value, code and amount_1000")
    elif kind in ("image", "video", "document"):
        media = param.get(kind)
        if not (isinstance(media, dict) and (media.get("link") or media.get("id"))):
            return invalid(f"{kind} needs a link or an id")
    elif kind in ("text", "payload", "coupon_code"):
        if not isinstance(param.get(kind), str):
            return invalid(f"{kind} parameter needs its value")
    elif kind != "date_time":
        return invalid(f"parameter type {kind!r} is not valid", INVALID_PARAMETER)
    return None


def _language(sent: dict[str, Any]) -> str:
    language = sent.get("language")
    return str(language.get("code") if isinstance(language, dict) else language)


def _body_text(template: dict[str, Any]) -> str:
    for component in template.get("components") or []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
            return str(component.get("text", ""))
    return ""


def check_new_template(body: Any) -> GraphError | None:
    if not isinstance(body, dict):
        return invalid("the body must be a JSON object", INVALID_PARAMETER)
    if not isinstance(body.get("name"), str) or not re.fullmatch(r"[a-z0-9_]{1,512}", body["name"]):
        return invalid("name may only hold lowercase letters, digits and underscores", INVALID_PARAMETER)
    if body.get("category") not in ("MARKETING", "UTILITY", "AUTHENTICATION"):
        return invalid("category must be MARKETING, UTILITY or AUTHENTICATION", INVALID_PARAMETER)
    if not isinstance(body.get("language"), str) or not body["language"]:
        return invalid("language is required", MISSING_PARAMETER)
    components = body.get("components")
    if not isinstance(components, list) or not any(
            isinstance(c, dict) and str(c.get("type", "")).upper() == "BODY" for c in components):
        return invalid("components must include a BODY", INVALID_PARAMETER)
    return None
