"""Metadata filters: one parser (strict, 400 naming the bad part) and one reference evaluator.

The language is Pinecone's subset of MongoDB: `{"genre": "drama", "year": {"$gte": 2020}}`,
`$eq $ne $in $nin $gt $gte $lt $lte`, combined with `$and`/`$or` (several keys in one object: all of
them). Semantics every backend follows (the conformance suite checks each):
- a list-of-strings field matches `$eq`/`$in` when any element does;
- `$ne`/`$nin` match only records that have the field (as Pinecone does since 2024), and none of its
  values is excluded;
- numbers compare numerically (1 == 1.0), booleans are not numbers, strings only equal strings;
- range operators match numbers only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ionflux.core.errors import InvalidRequest

Scalar = str | int | float | bool
METADATA_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:-]{0,63}")
COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
_MAX_CONDITIONS = 1000
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Cond:
    key: str
    op: str  # one of COMPARISONS
    value: Scalar | tuple[str | int | float, ...]


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Node, ...]


Node = Cond | AllOf | AnyOf


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_filter(raw: object, *, field: str = "filter") -> Node | None:
    """A validated filter tree, or None for no filter (`None` or `{}`)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidRequest("filter must be an object such as {\"genre\": {\"$eq\": \"drama\"}}", field=field)
    if not raw:
        return None
    counter = [0]
    return _parse_object(raw, field, 0, counter)


def _parse_object(raw: Mapping[str, Any], path: str, depth: int, counter: list[int]) -> Node:
    if depth > _MAX_DEPTH:
        raise InvalidRequest(f"filter nests deeper than {_MAX_DEPTH} levels", field=path)
    if not raw:
        raise InvalidRequest("an empty object is not a condition", field=path)
    parts: list[Node] = []
    for key, value in raw.items():
        where = f"{path}.{key}"
        if not isinstance(key, str):
            raise InvalidRequest("filter keys must be strings", field=path)
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidRequest(f"{key} takes a non-empty list of conditions", field=where)
            subs = []
            for i, item in enumerate(value):
                if not isinstance(item, Mapping):
                    raise InvalidRequest(f"{key} items must be objects", field=f"{where}[{i}]")
                subs.append(_parse_object(item, f"{where}[{i}]", depth + 1, counter))
            parts.append(AllOf(tuple(subs)) if key == "$and" else AnyOf(tuple(subs)))
        elif key.startswith("$"):
            raise InvalidRequest(f"unknown operator {key!r}; top-level operators are $and and $or", field=where)
        else:
            if not METADATA_KEY_RE.fullmatch(key):
                raise InvalidRequest("metadata keys are 1-64 characters of letters, digits, '_', ':' or '-'",
                                     field=where)
            parts.extend(_parse_field(key, value, where, counter))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _parse_field(key: str, value: object, where: str, counter: list[int]) -> list[Node]:
    if not isinstance(value, Mapping):
        return [_cond(key, "$eq", value, where, counter)]
    if not value:
        raise InvalidRequest("an empty operator object is not a condition", field=where)
    return [_cond(key, op, operand, f"{where}.{op}", counter) for op, operand in value.items()]


def _cond(key: str, op: object, value: object, where: str, counter: list[int]) -> Cond:
    counter[0] += 1
    if counter[0] > _MAX_CONDITIONS:
        raise InvalidRequest(f"a filter holds at most {_MAX_CONDITIONS} conditions", field=where)
    if op not in COMPARISONS:
        raise InvalidRequest(f"unknown operator {op!r}; use one of {', '.join(COMPARISONS)}", field=where)
    assert isinstance(op, str)
    if op in ("$eq", "$ne"):
        if not (isinstance(value, str | bool) or _finite_number(value)):
            raise InvalidRequest(f"{op} takes a string, a number or a boolean", field=where)
        assert isinstance(value, str | int | float)
        return Cond(key, op, value)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not _finite_number(value):
            raise InvalidRequest(f"{op} takes a number", field=where)
        assert isinstance(value, int | float)
        return Cond(key, op, value)
    if not isinstance(value, list) or not value or len(value) > _MAX_CONDITIONS:
        raise InvalidRequest(f"{op} takes a non-empty list (at most {_MAX_CONDITIONS}) of strings or numbers",
                             field=where)
    for item in value:
        if not (isinstance(item, str) or _finite_number(item)):
            raise InvalidRequest(f"{op} takes a list of strings or numbers", field=where)
    return Cond(key, op, tuple(value))


def _finite_number(value: object) -> bool:
    return is_number(value) and math.isfinite(value)  # type: ignore[arg-type]


def scalar_equal(a: object, b: object) -> bool:
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and a == b


Predicate = Callable[[Mapping[str, Any]], bool]


def compile_filter(node: Node) -> Predicate:
    """The reference evaluator: a predicate over one record's metadata."""
    if isinstance(node, AllOf):
        preds = [compile_filter(p) for p in node.parts]
        return lambda md: all(p(md) for p in preds)
    if isinstance(node, AnyOf):
        preds = [compile_filter(p) for p in node.parts]
        return lambda md: any(p(md) for p in preds)
    return _compile_cond(node)


def _values(md: Mapping[str, Any], key: str) -> list[Any]:
    value = md.get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _compile_cond(c: Cond) -> Predicate:
    key, op, operand = c.key, c.op, c.value
    if op == "$eq":
        return lambda md: any(scalar_equal(v, operand) for v in _values(md, key))
    if op == "$ne":
        return lambda md: bool(vs := _values(md, key)) and not any(scalar_equal(v, operand) for v in vs)
    if op == "$in":
        items = operand if isinstance(operand, tuple) else (operand,)
        return lambda md: any(scalar_equal(v, o) for v in _values(md, key) for o in items)
    if op == "$nin":
        items = operand if isinstance(operand, tuple) else (operand,)
        return lambda md: bool(vs := _values(md, key)) and not any(scalar_equal(v, o) for v in vs for o in items)
    bound = float(operand)  # type: ignore[arg-type]
    compare: Callable[[float], bool] = {
        "$gt": lambda v: v > bound, "$gte": lambda v: v >= bound,
        "$lt": lambda v: v < bound, "$lte": lambda v: v <= bound,
    }[op]
    return lambda md: any(is_number(v) and compare(v) for v in _values(md, key))


def to_json(node: Node) -> dict[str, Any]:
    """The canonical JSON form (explicit operators), which Pinecone accepts as is."""
    if isinstance(node, AllOf):
        return {"$and": [to_json(p) for p in node.parts]}
    if isinstance(node, AnyOf):
        return {"$or": [to_json(p) for p in node.parts]}
    value = list(node.value) if isinstance(node.value, tuple) else node.value
    return {node.key: {node.op: value}}
