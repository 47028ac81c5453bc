"""Namespace templates resolve strictly (the agent bridge calls this), and physical names keep
workspaces apart even when their namespaces are spelt the same."""

from __future__ import annotations

import pytest

from ionflux.memory.templates import TemplateError, physical_name, resolve_namespace_template


def test_templates_resolve_every_placeholder() -> None:
    variables = {"instance_id": "inst-7", "agent_id": "agent001", "brand_id": 42, "workspace_id": "w1"}
    resolved = resolve_namespace_template("emailwizard_instance_{{instance_id}}", variables)
    assert resolved == "emailwizard_instance_inst-7"
    assert resolve_namespace_template("{{ agent_id }}_{{brand_id}}_{{workspace_id}}", variables) == "agent001_42_w1"
    assert resolve_namespace_template("static_name", {}) == "static_name"


@pytest.mark.parametrize(("template", "variables", "reason"), [
    ("m_{{instance_id}}", {}, "unknown variable"),
    ("m_{{instance_id}}", {"instance_id": ""}, "empty"),
    ("m_{{instance_id}}", {"instance_id": None}, "empty"),
    ("m_{{instance_id}}", {"instance_id": "A"}, "not 1-64"),  # never lower-cased behind the caller's back
    ("m_{{instance_id}}", {"instance_id": "a b"}, "not 1-64"),
    ("m_{{instance_id}}", {"instance_id": "x" * 63}, "not 1-64"),
    ("m_{{instance_id}", {"instance_id": "1"}, "malformed"),
    ("m_{instance_id}", {"instance_id": "1"}, "not 1-64"),
    ("", {}, "empty"),
])
def test_a_template_that_does_not_resolve_cleanly_is_an_error_naming_it(
    template: str, variables: dict[str, object], reason: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        resolve_namespace_template(template, variables)
    assert reason in caught.value.message and caught.value.field == "namespace_template"
    if template:
        assert repr(template) in caught.value.message


def test_physical_names_differ_per_workspace_and_are_stable() -> None:
    a, b = physical_name("ws-a", "notes"), physical_name("ws-b", "notes")
    assert a != b and a == physical_name("ws-a", "notes")
    assert physical_name("ws-a", "b_notes") != physical_name("ws-a_b", "notes")  # no concatenation ambiguity
    assert len(a) == 35 and a.startswith("ns_")
