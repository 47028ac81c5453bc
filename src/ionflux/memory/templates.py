"""Namespace names, strict template resolution, and the physical names backends store them under.

`resolve_namespace_template` is the one function the agent bridge calls when it creates an agent
configuration: `AgentDefinition.memory_config.namespace_template` + the configuration's variables ->
`AgentConfiguration.external_memory_namespace`. It never guesses: an unknown variable, an empty value
or a result outside `[a-z0-9_-]{1,64}` is an error naming the template, so two configurations can never
silently share memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from ionflux.core.errors import InvalidRequest

NAMESPACE_RE = re.compile(r"[a-z0-9_-]{1,64}")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_STRAY_BRACES_RE = re.compile(r"\{\{|\}\}")


class TemplateError(InvalidRequest):
    """A namespace template did not resolve to a legal, fully specified namespace."""


def resolve_namespace_template(
    template: str, variables: Mapping[str, object], *, field: str = "namespace_template"
) -> str:
    """Substitute `{{name}}` placeholders from `variables`; the result must be a legal namespace.

    Values are used as given (str(value)), never lower-cased or slugged, so two different ids can
    never collapse into one namespace: a value that would make the result illegal is an error.
    """
    if not isinstance(template, str) or not template.strip():
        raise TemplateError("the namespace template is empty", field=field)
    names = _PLACEHOLDER_RE.findall(template)
    unknown = sorted({n for n in names if n not in variables})
    if unknown:
        raise TemplateError(
            f"namespace template {template!r} uses unknown variable(s) {', '.join(unknown)}; "
            f"given: {', '.join(sorted(variables)) or 'none'}", field=field)
    empty = sorted({n for n in names if variables[n] is None or str(variables[n]) == ""})
    if empty:
        raise TemplateError(
            f"namespace template {template!r}: variable(s) {', '.join(empty)} are empty", field=field)
    resolved = _PLACEHOLDER_RE.sub(lambda m: str(variables[m.group(1)]), template)
    if _STRAY_BRACES_RE.search(_PLACEHOLDER_RE.sub("", template)):
        raise TemplateError(f"namespace template {template!r} has a malformed placeholder "
                            "(expected {{variable_name}})", field=field)
    if not NAMESPACE_RE.fullmatch(resolved):
        raise TemplateError(
            f"namespace template {template!r} resolved to {resolved[:80]!r}, which is not 1-64 characters "
            "of a-z, 0-9, '_' or '-'", field=field)
    return resolved


def check_namespace(name: object, *, field: str = "namespace") -> str:
    if not isinstance(name, str) or not NAMESPACE_RE.fullmatch(name):
        raise InvalidRequest(f"namespace must be 1-64 characters of a-z, 0-9, '_' or '-' (got {str(name)[:80]!r})",
                             field=field)
    return name


def physical_name(workspace_id: str, namespace: str) -> str:
    """The backend-side name of (workspace, namespace): a hash of both, so workspaces never collide.

    Fixed length and alphabet, so it is a legal Pinecone namespace, Qdrant payload value and file name.
    """
    digest = hashlib.blake2b(f"{workspace_id}\x00{namespace}".encode(), digest_size=16).hexdigest()
    return f"ns_{digest}"
