"""The `inputs`/`outputs` schemas of a blueprint: JSON Schema, or its shorthand, validated with `jsonschema`.

Blueprints write inputs either as a JSON Schema object (`type: object`, `properties`, `required`) or as
the shorthand `name: {type, default, ..., required: true}` / `name: number`; both normalise to one JSON
Schema (Draft 2020-12), and every validation error is reported with the dotted path of the bad field.
"""

from __future__ import annotations

import copy
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from ionflux.core.errors import InvalidRequest

_SCHEMA_WORDS = {"type", "properties", "required", "additionalProperties", "$schema", "allOf", "anyOf", "oneOf"}


def normalise_schema(raw: Any, *, field: str, closed: bool = True) -> dict[str, Any]:
    """A JSON Schema for `raw` (schema or shorthand); InvalidRequest naming `field` if it is not one.

    A shorthand is `closed` (unknown names refused: catches typos in configurations) unless told otherwise.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{field} must be a mapping of input names to schemas, or a JSON Schema", field=field)
    if raw.get("type") == "object" or (raw and set(raw) <= _SCHEMA_WORDS and "properties" in raw):
        schema = copy.deepcopy(raw)
    else:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, spec in raw.items():
            if isinstance(spec, str):
                spec = {"type": spec}
            if not isinstance(spec, dict):
                raise InvalidRequest(f"{field}.{name} must be a schema (a mapping) or a type name",
                                     field=f"{field}.{name}")
            spec = copy.deepcopy(spec)
            if spec.pop("required", False) is True:
                required.append(str(name))
            properties[str(name)] = spec
        schema = {"type": "object", "properties": properties, "additionalProperties": not closed}
        if required:
            schema["required"] = required
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path if p != "properties")
        name = f"{field}.{where}" if where else field
        raise InvalidRequest(f"{name} is not a valid schema: {exc.message}", field=name) from None
    return schema


def apply_defaults(schema: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the schema's `default`s filled in for absent properties (recursively for objects)."""
    out = copy.deepcopy(values)
    for name, spec in (schema.get("properties") or {}).items():
        if not isinstance(spec, dict):
            continue
        if name not in out and "default" in spec:
            out[name] = copy.deepcopy(spec["default"])
        if isinstance(out.get(name), dict) and spec.get("type") == "object":
            out[name] = apply_defaults(spec, out[name])
    return out


def validate(schema: dict[str, Any], instance: Any, *, field: str) -> None:
    """Raise InvalidRequest naming the first bad field (`field.path.to.it`) if `instance` breaks `schema`."""
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(map(str, e.path)))
    if not errors:
        return
    error = errors[0]
    path = [str(p) for p in error.absolute_path]
    path += _named_property(error)
    name = ".".join([field, *path])
    raise InvalidRequest(f"{name}: {error.message}", field=name)


def _named_property(error: ValidationError) -> list[str]:
    """The property a `required`/`additionalProperties` error is about (its path stops at the parent)."""
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [p for p in error.validator_value if p not in instance]
        return [str(missing[0])] if missing else []
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        known = set(error.schema.get("properties") or {})
        extra = sorted(k for k in instance if k not in known)
        return [str(extra[0])] if extra else []
    return []
