"""Batch templates: the Jinja-free rendering of plain lookups gives what the sandboxed Jinja rendering gives."""

from __future__ import annotations

from typing import Any

import pytest

from ionflux.core.errors import InvalidRequest
from ionflux.email.templates import CompiledTemplate, Rendered, TemplateSource, fill

LOOKUPS = TemplateSource(subject="{{ name }}, your {{ offer.kind }}\noffer",
                         text="Hi {{ name }}, use {{ code }} ({{ offer.kind }}).",
                         html="<p>Hi {{ name }}, use <b>{{ code }}</b> at {{ offer.shop.url }}.</p>")
DATA: list[dict[str, Any]] = [
    {"name": "Ana", "code": "C00001", "offer": {"kind": "spring", "shop": {"url": "https://x.example/?a=1&b=2"}}},
    {"name": "<script>alert(1)</script>", "code": "'\"&", "offer": {"kind": "<b>", "shop": {"url": "<>"}}},
    {"name": None, "code": 12, "offer": {"kind": True, "shop": {"url": 1.5}}},
    {"name": ["a", "<b>"], "code": {"x": "<y>"}, "offer": {"kind": "ü€", "shop": {"url": ""}}},
    {"name": "line\r\nbreak", "code": "x", "offer": {"kind": "k", "shop": {"url": "u"}}},
]


def _jinja(template: CompiledTemplate, data: dict[str, Any]) -> Rendered:
    lookups, template._lookups = template._lookups, None  # the sandboxed path, for comparison
    try:
        return template.render(data)
    finally:
        template._lookups = lookups


def _filled(template: CompiledTemplate, rendered: Rendered) -> tuple[str, str | None, str | None]:
    return rendered.subject, fill(rendered.text, rendered.substitutions), fill(rendered.html, rendered.substitutions)


@pytest.mark.parametrize("data", DATA)
def test_lookups_render_as_jinja_does(data: dict[str, Any]) -> None:
    template = CompiledTemplate(LOOKUPS, skeleton=True)
    assert template._lookups is not None and template.substitutable
    direct, sandboxed = template.render(data), _jinja(template, data)
    assert _filled(template, direct) == _filled(template, sandboxed)
    assert "<script>" not in (fill(direct.html, direct.substitutions) or "")


@pytest.mark.parametrize("data", [
    {"code": "x", "offer": {"kind": "k", "shop": {"url": "u"}}},                  # a name missing: 400
    {"name": "n", "code": "x", "offer": {"items": "k", "kind": "k", "shop": "not a dict"}},  # no .url: 400
])
def test_missing_values_are_refused_as_before(data: dict[str, Any]) -> None:
    template = CompiledTemplate(LOOKUPS, skeleton=True)
    with pytest.raises(InvalidRequest) as direct:
        template.render(data)
    with pytest.raises(InvalidRequest) as sandboxed:
        _jinja(template, data)
    assert direct.value.message == sandboxed.value.message


def test_only_plain_lookups_skip_jinja() -> None:
    others = (("{{ name|upper }}", "x"), ("Hi", "{{ n * 2 }}"), ("{{ self }}", "x"), ("Hi", "{{ a['b'] }}"))
    for subject, text in others:
        assert CompiledTemplate(TemplateSource(subject, text), skeleton=True)._lookups is None
    # a dict method's name is Jinja's method, and a global is Jinja's global: both left to the sandbox
    template = CompiledTemplate(TemplateSource("{{ d.items }} {{ range }}", "x"), skeleton=True)
    assert template._lookups is not None
    rendered = template.render({"d": {"items": "mine"}})
    assert "mine" not in rendered.subject and "built-in method items" in rendered.subject
