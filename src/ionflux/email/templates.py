"""Rendering templates from untrusted data: Jinja2's immutable sandbox, HTML autoescaped, strict about undefined
names, and bounded (source size, output size, string and number growth).

A batch renders its template once into a *skeleton* when the template is linear (only `{{ expression }}`s
between literal text, no `{% %}` control flow): every expression becomes a substitution tag, and each
recipient gets just the rendered values. Providers that substitute server-side (SendGrid personalizations)
then carry 1,000 recipients per request; the others fill the tags in locally. A template with control flow
is rendered in full for each recipient.

When every expression of a skeleton template (subject included) is a plain lookup (`{{ name }}`,
`{{ customer.first_name }}`), a recipient whose data holds each looked-up value in plain dicts gets its values
without Jinja: the same `str` / HTML escape Jinja applies to an output, with no code run. Anything else (a
name missing from the data, a dict method's name, a filter, arithmetic) goes through the sandbox as before.
"""

from __future__ import annotations

import copy
import operator
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.environment import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from ionflux.core.errors import InvalidRequest

MAX_SOURCE = 256 * 1024
MAX_OUTPUT = 2 * 1024 * 1024
MAX_GROWTH = 1_000_000  # longest string or biggest number a `*` / `**` may produce


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox stops attribute escapes; this also stops `'x' * 10**9`-style memory exhaustion."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise TemplateError("exponent too large in template")
            return operator.pow(left, right)
        size = _product_size(left, right)
        if size > MAX_GROWTH:
            raise TemplateError("template expression produces a value that is too large")
        return operator.mul(left, right)


def _product_size(left: Any, right: Any) -> float:
    sized = [v for v in (left, right) if isinstance(v, str | bytes | list | tuple)]
    if sized:
        count = right if sized[0] is left else left
        return len(sized[0]) * (count if isinstance(count, int) else 1)
    if isinstance(left, int | float) and isinstance(right, int | float):
        return abs(left * right) if abs(left) < 1e308 and abs(right) < 1e308 else float("inf")
    return 0


HTML_ENV = _BoundedSandbox(autoescape=True, undefined=StrictUndefined)
TEXT_ENV = _BoundedSandbox(autoescape=False, undefined=StrictUndefined)


@dataclass(frozen=True)
class TemplateSource:
    subject: str
    text: str | None = None
    html: str | None = None


def check_source(source: TemplateSource) -> None:
    """Compile every part (400 naming the part on a syntax error), so a stored template always renders."""
    for part, env in (("subject", TEXT_ENV), ("text", TEXT_ENV), ("html", HTML_ENV)):
        text = getattr(source, part)
        if text is None:
            continue
        if len(text) > MAX_SOURCE:
            raise InvalidRequest(f"{part}: a template part may have at most {MAX_SOURCE} characters", field=part)
        try:
            env.parse(text)
        except TemplateError as exc:
            raise InvalidRequest(f"{part}: template syntax error: {exc}", field=part) from None


def _render(template: Template, data: Mapping[str, Any], part: str) -> str:
    try:
        chunks, size = [], 0
        for chunk in template.generate(dict(data)):  # streamed, so a runaway loop stops at the output cap
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise InvalidRequest(f"template_data: the rendered {part} exceeds {MAX_OUTPUT} characters",
                                     field="template_data")
            chunks.append(chunk)
        out = "".join(chunks)
    except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
        raise InvalidRequest(f"template_data: the {part} does not render: {exc}", field="template_data") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, RecursionError) as exc:
        raise InvalidRequest(f"template_data: the {part} does not render: {type(exc).__name__}",
                             field="template_data") from None
    return out


@dataclass
class _Part:
    """One body part, either rendered whole per recipient or as a skeleton plus one template per tag."""

    name: str
    whole: Template
    skeleton: str | None = None
    tags: list[tuple[str, Template]] = field(default_factory=list)
    expressions: list[nodes.Expr] = field(default_factory=list)  # the tags' own, for the combined template


def _linear_part(env: _BoundedSandbox, name: str, source: str, prefix: str) -> _Part:
    tree = env.parse(source)
    whole = env.from_string(source)
    if not all(isinstance(node, nodes.Output) for node in tree.body):
        return _Part(name, whole)
    pieces: list[str] = []
    tags: list[tuple[str, Template]] = []
    expressions: list[nodes.Expr] = []
    for output in tree.body:
        assert isinstance(output, nodes.Output)
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData):
                pieces.append(node.data)
                continue
            tag = f"{prefix}{len(tags)}-"
            mini = nodes.Template([nodes.Output([node], lineno=node.lineno)], lineno=1)
            mini.set_environment(env)
            tags.append((tag, env.template_class.from_code(env, env.compile(mini), env.make_globals(None))))
            expressions.append(copy.deepcopy(node))
            pieces.append(tag)
    return _Part(name, whole, "".join(pieces), tags, expressions)


def _combined(subject: str, parts: list[_Part], separator: str) -> Template:
    """One template yielding the subject and every tag's value, `separator` between them, each tag escaped as
    its part is (an `{% autoescape %}` scope per tag): one render per recipient instead of one per tag."""
    body: list[nodes.Node] = list(TEXT_ENV.parse(subject).body)
    for part in parts:
        for expression in part.expressions:
            body.append(nodes.Output([nodes.TemplateData(separator)]))
            body.append(nodes.ScopedEvalContextModifier(
                [nodes.Keyword("autoescape", nodes.Const(part.name == "html"))],
                [nodes.Output([copy.deepcopy(expression)])]))
    tree = nodes.Template(body, lineno=1)
    tree.set_environment(TEXT_ENV)
    return TEXT_ENV.template_class.from_code(TEXT_ENV, TEXT_ENV.compile(tree), TEXT_ENV.make_globals(None))


Path = tuple[str, ...]  # a name, then attribute names: {{ a.b.c }} is ("a", "b", "c")
_DICT_ATTRIBUTES = frozenset(dir(dict))  # Jinja's `d.items` is the method, not d["items"]
_MISSING = object()


def _path(node: nodes.Node) -> Path | None:
    attributes: list[str] = []
    while isinstance(node, nodes.Getattr):
        attributes.append(node.attr)
        node = node.node
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name != "self":  # `self`: Jinja's own
        return (node.name, *reversed(attributes))
    return None


def _subject_pieces(subject: str) -> list[str | Path] | None:
    """The subject as literal text and lookups, or None when it holds anything else."""
    pieces: list[str | Path] = []
    for output in TEXT_ENV.parse(subject).body:
        if not isinstance(output, nodes.Output):
            return None
        for node in output.nodes:
            found = node.data if isinstance(node, nodes.TemplateData) else _path(node)
            if found is None:
                return None
            pieces.append(found)
    return pieces


def _resolve(data: Mapping[str, Any], path: Path) -> Any:
    """What Jinja would find for `path` in `data`, when that is a plain dict lookup; else _MISSING."""
    value = data.get(path[0], _MISSING)
    for attribute in path[1:]:
        if type(value) is not dict or attribute in _DICT_ATTRIBUTES:
            return _MISSING
        value = value.get(attribute, _MISSING)
    return value


@dataclass(frozen=True)
class _Lookups:
    """A skeleton template whose every expression is a lookup: rendered by `str` / `escape`, without Jinja."""

    subject: list[str | Path]
    tags: list[tuple[str, Path, bool]]  # tag, what it shows, HTML-escaped

    def render(self, data: Mapping[str, Any], bodies: dict[str, str | None]) -> Rendered | None:
        subject: list[str] = []
        for piece in self.subject:
            if isinstance(piece, str):
                subject.append(piece)
                continue
            value = _resolve(data, piece)
            if value is _MISSING:
                return None
            subject.append(str(value))
        substitutions: dict[str, str] = {}
        size = 0
        for tag, path, html in self.tags:
            value = _resolve(data, path)
            if value is _MISSING:
                return None
            text = str(escape(value)) if html else str(value)
            size += len(text)
            substitutions[tag] = text
        if size > MAX_OUTPUT:
            return None  # the sandboxed rendering says which part is too big
        line = "".join(subject)
        if "\n" in line or "\r" in line:
            line = " ".join(line.split())
        return Rendered(line, bodies["text"], bodies["html"], substitutions)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None
    substitutions: dict[str, str]  # tag -> value, when text/html are the batch's skeletons


class CompiledTemplate:
    """A template ready to render for many recipients (see the module docstring)."""

    def __init__(self, source: TemplateSource, *, skeleton: bool) -> None:
        check_source(source)
        nonce = secrets.token_hex(4)  # recipients' data cannot guess (and so inject) another tag
        self.subject = TEXT_ENV.from_string(source.subject)
        self.parts: list[_Part] = []
        for name, env, text in (("text", TEXT_ENV, source.text), ("html", HTML_ENV, source.html)):
            if text is None:
                continue
            prefix = f"-ifx{nonce}{name[0]}"
            self.parts.append(_linear_part(env, name, text, prefix) if skeleton else _Part(name, env.from_string(text)))
        self.substitutable = skeleton and all(p.skeleton is not None for p in self.parts)
        self._separator = f"\x1f{secrets.token_hex(8)}\x1f"  # unguessable, so data cannot fake a boundary
        self._combined = _combined(source.subject, self.parts, self._separator) if self.substitutable else None
        self._bodies: dict[str, str | None] = {"text": None, "html": None}
        for part in self.parts:
            self._bodies[part.name] = part.skeleton
        self._lookups = self._plain_lookups(source.subject) if self.substitutable else None

    def _plain_lookups(self, subject: str) -> _Lookups | None:
        pieces = _subject_pieces(subject)
        tags = [(tag, _path(expression), part.name == "html") for part in self.parts
                for (tag, _), expression in zip(part.tags, part.expressions, strict=True)]
        if pieces is None or any(path is None for _, path, _ in tags):
            return None
        return _Lookups(pieces, [(tag, path, html) for tag, path, html in tags if path is not None])

    def skeleton(self, name: str) -> str | None:
        part = next((p for p in self.parts if p.name == name), None)
        return part.skeleton if part else None

    def render(self, data: Mapping[str, Any]) -> Rendered:
        if self._lookups is not None:
            direct = self._lookups.render(data, self._bodies)
            if direct is not None:
                return direct
        if self._combined is not None:
            fast = self._render_combined(data)
            if fast is not None:
                return fast
        subject = _render(self.subject, data, "subject")
        if "\n" in subject or "\r" in subject:
            subject = " ".join(subject.split())
        bodies: dict[str, str | None] = {"text": None, "html": None}
        substitutions: dict[str, str] = {}
        for part in self.parts:
            if self.substitutable:
                for tag, mini in part.tags:
                    substitutions[tag] = _render(mini, data, part.name)
                bodies[part.name] = part.skeleton
            else:
                bodies[part.name] = _render(part.whole, data, part.name)
        return Rendered(subject, bodies["text"], bodies["html"], substitutions)

    def _render_combined(self, data: Mapping[str, Any]) -> Rendered | None:
        """None when it fails: the part-by-part rendering then says which part and why."""
        assert self._combined is not None
        try:
            values = _render(self._combined, data, "message").split(self._separator)
        except InvalidRequest:
            return None
        tags = [(part, tag) for part in self.parts for tag, _ in part.tags]
        if len(values) != len(tags) + 1:
            return None
        subject = values[0]
        if "\n" in subject or "\r" in subject:
            subject = " ".join(subject.split())
        return Rendered(subject, self._bodies["text"], self._bodies["html"],
                        {tag: value for (_, tag), value in zip(tags, values[1:], strict=True)})


def fill(text: str | None, substitutions: Mapping[str, str]) -> str | None:
    """The skeleton with its tags replaced (providers without server-side substitution)."""
    if text is None or not substitutions:
        return text
    for tag, value in substitutions.items():
        text = text.replace(tag, value)
    return text


Renderer = Callable[[Mapping[str, Any]], Rendered]
