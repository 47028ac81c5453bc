"""Each message type accepted, and refused per Meta's limits with the field named — by our validator before
Meta is called, and by the simulator's own (independent) rules as Meta would."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ionflux.core.errors import InvalidRequest
from ionflux.messaging.validation import SendRequest, graph_message
from ionflux.sandbox import whatsapp_rules as rules

TEXT = {"to": "+447700900123", "type": "text", "text": {"body": "Hi", "preview_url": True}}
TEMPLATE = {"to": "447700900123", "type": "template", "template": {
    "name": "order_update", "language": {"code": "en_US"}, "components": [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example/p.png"}}]},
        {"type": "body", "parameters": [
            {"type": "text", "text": "John"},
            {"type": "currency", "currency": {"fallback_value": "$10", "code": "USD", "amount_1000": 10000}}]},
        {"type": "button", "sub_type": "quick_reply", "index": "0",
         "parameters": [{"type": "payload", "payload": "CONFIRM"}]}]}}
BUTTONS = {"to": "447700900123", "type": "interactive", "interactive": {
    "type": "button", "header": {"type": "text", "text": "Order 1001"}, "body": {"text": "Pick one"},
    "footer": {"text": "Acme"}, "action": {"buttons": [
        {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
        {"type": "reply", "reply": {"id": "no", "title": "No"}},
        {"type": "reply", "reply": {"id": "later", "title": "Later"}}]}}}
LIST = {"to": "447700900123", "type": "interactive", "interactive": {
    "type": "list", "body": {"text": "Choose a size"}, "action": {"button": "Sizes", "sections": [
        {"title": "Tops", "rows": [{"id": f"t{i}", "title": f"Top {i}", "description": "cotton"} for i in range(5)]},
        {"title": "Shoes", "rows": [{"id": f"s{i}", "title": f"Shoe {i}"} for i in range(5)]}]}}}


def build(request: dict[str, Any]) -> dict[str, Any]:
    return graph_message(SendRequest.model_validate(request))


def sim_check(body: dict[str, Any]) -> rules.GraphError | None:
    problem = rules.check_envelope(body)
    if problem or body["type"] == "template":
        return problem
    return rules.check_text(body["text"]) if body["type"] == "text" else rules.check_interactive(body["interactive"])


@pytest.mark.parametrize("request_", [TEXT, TEMPLATE, BUTTONS, LIST], ids=["text", "template", "buttons", "list"])
def test_each_type_is_accepted_and_built_as_graph_expects(request_: dict[str, Any]) -> None:
    body = build(request_)
    assert body["messaging_product"] == "whatsapp" and body["recipient_type"] == "individual"
    assert body["to"] == "447700900123" and body["type"] == request_["type"]
    assert sim_check(body) is None


def test_reply_context_and_template_parameters_are_kept() -> None:
    body = build({**TEXT, "context": {"message_id": "wamid.ABC"}})
    assert body["context"] == {"message_id": "wamid.ABC"}
    assert body["text"] == {"preview_url": True, "body": "Hi"}
    template = build(TEMPLATE)["template"]
    assert template["components"][1]["parameters"][1]["currency"]["amount_1000"] == 10000
    assert template["components"][0]["parameters"][0]["image"]["link"].startswith("https://")


def mutate(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    keys = path.split(".")
    node: Any = doc
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


FOUR_BUTTONS = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(4)]
ELEVEN_ROWS = [{"id": f"r{i}", "title": f"Row {i}"} for i in range(11)]

# (base, path, bad value, the field our 400 names, whether the simulator refuses it too)
REFUSALS = [
    (TEXT, "text.body", "x" * 4097, "text.body", True),
    (TEXT, "text.body", "   ", "text.body", True),
    (TEXT, "text.preview_url", "yes", "text.preview_url", True),
    (TEXT, "to", "12ab", "to", True),
    (BUTTONS, "interactive.action.buttons", FOUR_BUTTONS, "interactive.action.buttons[3]", True),
    (BUTTONS, "interactive.action.buttons.0.reply.title", "x" * 21, "interactive.action.buttons[0].reply.title", True),
    (BUTTONS, "interactive.action.buttons.1.reply.id", "x" * 257, "interactive.action.buttons[1].reply.id", True),
    (BUTTONS, "interactive.body.text", "x" * 1025, "interactive.body.text", True),
    (BUTTONS, "interactive.footer.text", "x" * 61, "interactive.footer.text", True),
    (BUTTONS, "interactive.action.buttons", [], "interactive.action.buttons", True),
    (LIST, "interactive.action.sections.0.rows.0.title", "x" * 25,
     "interactive.action.sections[0].rows[0].title", True),
    (LIST, "interactive.action.sections.0.rows.0.description", "x" * 73,
     "interactive.action.sections[0].rows[0].description", True),
    (LIST, "interactive.action.sections.1.rows", ELEVEN_ROWS, "interactive.action.sections[1].rows[5]", True),
    (LIST, "interactive.action.button", "x" * 21, "interactive.action.button", True),
    (TEMPLATE, "template.name", "Order Update", "template.name", False),
    (TEMPLATE, "template.language", {"code": "english"}, "template.language.code", False),
    (TEMPLATE, "template.components.1.parameters.1.currency.code", "dollars",
     "template.components[1].parameters[1].currency.code", False),
    (TEMPLATE, "template.components.1.parameters.1.currency.amount_1000", "10",
     "template.components[1].parameters[1].currency.amount_1000", True),
    (TEMPLATE, "template.components.0.parameters.0.image", {"caption": "no link"},
     "template.components[0].parameters[0].image", True),
    (TEMPLATE, "template.components.2.index", "ten", "template.components[2].index", False),
]


@pytest.mark.parametrize(("base", "path", "value", "field", "meta_refuses"), REFUSALS,
                         ids=[f"{r[3]}" for r in REFUSALS])
def test_limits_are_refused_naming_the_field(base: dict[str, Any], path: str, value: Any, field: str,
                                             meta_refuses: bool) -> None:
    bad = mutate(base, path, value)
    with pytest.raises(InvalidRequest) as caught:
        build(bad)
    assert caught.value.field == field
    if meta_refuses:  # the simulator, written from the same facts independently, refuses the raw body too
        raw = {"messaging_product": "whatsapp", "recipient_type": "individual", **bad}
        if raw["type"] == "template":
            stored = {"status": "APPROVED", "components": [{"type": "BODY", "text": "Hi {{1}} {{2}}"}]}
            assert rules.check_envelope(raw) or rules.check_template(raw["template"], stored) is not None
        else:
            assert sim_check(raw) is not None


def test_a_type_object_must_match_the_type() -> None:
    with pytest.raises(InvalidRequest) as caught:
        build({**TEXT, "interactive": BUTTONS["interactive"]})
    assert caught.value.field == "interactive"
    with pytest.raises(InvalidRequest) as caught:
        build({"to": "447700900123", "type": "template"})
    assert caught.value.field == "template"
    with pytest.raises(InvalidRequest) as caught:
        build({**TEXT, "context": {"message_id": ""}})
    assert caught.value.field == "context.message_id"
