"""Resolving a definition's memory `namespace_template` for one configuration.

The memory service owns the rules (issue 5: strict, `[a-z0-9_-]{1,64}`, unknown variable or empty value
is an error naming the template). When it runs in this process its public `resolve_namespace` is used;
otherwise the same rules are applied here, so a configuration never silently shares a namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ionflux.core.errors import InvalidRequest

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAMESPACE = re.compile(r"^[a-z0-9_-]{1,64}$")
Resolver = Callable[[str, Mapping[str, str]], str]


def resolve_template(template: str, variables: Mapping[str, str | None]) -> str:
    """`template` with its `{{name}}` variables replaced; InvalidRequest naming the template on any doubt."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise InvalidRequest(
                f"memory namespace template {template!r} uses unknown variable {name!r} "
                f"(known: {', '.join(sorted(variables))})", field="memory.namespace_template")
        got = variables[name]
        if got is None or not str(got).strip():
            raise InvalidRequest(
                f"memory namespace template {template!r}: variable {name!r} is empty for this configuration",
                field=name if name == "brand_id" else "memory.namespace_template")
        return str(got).strip().lower()

    result = _VAR.sub(value, template)
    if "{{" in result or "}}" in result or not _NAMESPACE.match(result):
        raise InvalidRequest(
            f"memory namespace template {template!r} resolves to {result!r}, which is not 1-64 of a-z, 0-9, '_', '-'",
            field="memory.namespace_template")
    return result


def namespace_resolver(memory_service: Any = None) -> Resolver:
    """The memory service's public resolver (`ionflux.memory.templates`), or the same rules applied here."""
    try:
        from ionflux.memory.templates import resolve_namespace_template
    except ImportError:  # a build without the memory package
        return resolve_template

    def resolve(template: str, variables: Mapping[str, str]) -> str:
        return resolve_namespace_template(template, variables, field="memory.namespace_template")

    return resolve
