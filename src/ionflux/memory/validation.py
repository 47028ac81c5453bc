"""Input checks shared by the HTTP API and the Python interface: ids, vectors, metadata.

The rules are the intersection of what every backend accepts (Pinecone's are the tightest: ASCII ids of
at most 512 characters, metadata of strings, numbers, booleans and lists of strings, 40 KB a record), so
a namespace can move between backends without data being refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ionflux.core.errors import InvalidRequest
from ionflux.memory.filters import METADATA_KEY_RE, is_number
from ionflux.memory.interface import Metadata

MAX_ID_LENGTH = 512
MAX_METADATA_BYTES = 40 * 1024


def check_id(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidRequest(f"an id is a string of 1-{MAX_ID_LENGTH} characters", field=field)
    if not value.isascii() or not value.isprintable():
        raise InvalidRequest("an id must be printable ASCII", field=field)
    return value


def check_ids(values: object, *, field: str, limit: int) -> list[str]:
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise InvalidRequest("ids must be a non-empty list of strings", field=field)
    if len(values) > limit:
        raise InvalidRequest(f"at most {limit} ids per call (got {len(values)})", field=field)
    return [check_id(v, field=f"{field}[{i}]") for i, v in enumerate(values)]


def check_vector(values: object, dimension: int, *, field: str) -> np.ndarray:
    """A float32 vector of the namespace's dimension, with only finite values."""
    if not isinstance(values, Sequence | np.ndarray) or isinstance(values, str):
        raise InvalidRequest("values must be a list of numbers", field=field)
    if len(values) != dimension:
        raise InvalidRequest(f"dimension mismatch: got {len(values)} values, the namespace has dimension {dimension}",
                             field=field)
    if isinstance(values, np.ndarray):
        if not np.issubdtype(values.dtype, np.number):
            raise InvalidRequest("values must be numbers", field=field)
    elif not all(is_number(v) for v in values):
        raise InvalidRequest("values must be numbers", field=field)
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(np.abs(array) > np.finfo(np.float32).max):
        raise InvalidRequest("values must be finite 32-bit floats", field=field)
    return array.astype(np.float32)


def check_metadata(raw: object, *, field: str) -> Metadata:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidRequest("metadata must be an object", field=field)
    out: Metadata = {}
    for key, value in raw.items():
        where = f"{field}.{key}"
        if not isinstance(key, str) or not METADATA_KEY_RE.fullmatch(key):
            raise InvalidRequest("metadata keys are 1-64 characters of letters, digits, '_', ':' or '-'", field=where)
        out[key] = _check_value(value, where)
    size = len(json.dumps(out, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata is {size} bytes; at most {MAX_METADATA_BYTES} per record", field=field)
    return out


def _check_value(value: Any, where: str) -> str | int | float | bool | list[str]:
    if value is None:
        raise InvalidRequest("null metadata values are not stored; leave the key out", field=where)
    if isinstance(value, str | bool):
        return value
    if is_number(value):
        if not math.isfinite(value):
            raise InvalidRequest("numbers must be finite", field=where)
        return value  # type: ignore[no-any-return]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidRequest("metadata values are strings, numbers, booleans or lists of strings", field=where)
