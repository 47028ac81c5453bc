"""The embedded engine's column-wise filter evaluation agrees with the reference evaluator on random
metadata and random filters (every operator, nesting, mixed types, lists, missing fields)."""

from __future__ import annotations

import random
from typing import Any

from ionflux.memory.backends.embedded.columns import ColumnCache
from ionflux.memory.filters import compile_filter, parse_filter

KEYS = ["genre", "year", "tags"]
STRINGS = ["a", "b", "c", "5"]
NUMBERS: list[Any] = [1, 2, 2.0, 3.5, 5]


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(STRINGS)
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.random() < 0.5
    if kind == 3:
        return rng.sample(STRINGS, rng.randrange(0, 3))
    return None  # absent


def _record(rng: random.Random) -> dict[str, Any]:
    return {k: v for k in KEYS if (v := _value(rng)) is not None}


def _scalar(rng: random.Random, with_bool: bool = True) -> Any:
    pool: list[Any] = STRINGS + NUMBERS + ([True, False] if with_bool else [])
    return rng.choice(pool)


def _filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.3:
        return {rng.choice(["$and", "$or"]): [_filter(rng, depth + 1) for _ in range(rng.randrange(1, 4))]}
    key = rng.choice(KEYS)
    op = rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "implicit"])
    if op == "implicit":
        return {key: _scalar(rng)}
    if op in ("$eq", "$ne"):
        return {key: {op: _scalar(rng)}}
    if op in ("$in", "$nin"):
        return {key: {op: [_scalar(rng, with_bool=False) for _ in range(rng.randrange(1, 4))]}}
    return {key: {op: rng.choice(NUMBERS)}}


def test_columns_agree_with_the_reference_evaluator() -> None:
    rng = random.Random(1234)
    records = [_record(rng) for _ in range(300)]
    cache = ColumnCache()
    for _ in range(500):
        raw = _filter(rng)
        node = parse_filter(raw)
        assert node is not None
        predicate = compile_filter(node)
        expected = [predicate(md) for md in records]
        assert cache.mask(node, records).tolist() == expected, raw
