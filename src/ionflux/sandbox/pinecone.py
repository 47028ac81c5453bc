"""A strict Pinecone data-plane simulator (one serverless dense index) that the official SDK accepts.

Serves what IONFLUX uses, on the index host's REST paths: `POST /vectors/upsert`, `POST /query`,
`GET /vectors/fetch`, `POST /vectors/delete`, `POST /describe_index_stats`, `GET /namespaces/{name}`.
Refuses what Pinecone refuses, with its error body `{"code", "message", "details"}` (gRPC status
codes): a missing or wrong `Api-Key` (401), no `X-Pinecone-Api-Version`, unknown fields, more than
1,000 vectors or 2 MB in an upsert, a dimension mismatch, null/nested metadata, metadata over 40 KB,
ids that are empty, non-ASCII or over 512 characters, filters with unknown operators or wrongly typed
operands, a filter on describe_index_stats, several delete selectors at once, and deletes in a
namespace that does not exist (404). Filters follow Pinecone's documented semantics, written here
independently of ionflux.memory so the conformance suite compares two implementations. Unlike the real
service, writes are visible at once.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_UPSERT_VECTORS = 1000
MAX_UPSERT_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_TOP_K = 10_000
_VERSION_RE = re.compile(r"\d{4}-\d{2}")
_INVALID_ARGUMENT, _NOT_FOUND, _UNAUTHENTICATED = 3, 5, 16


class PineconeApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> PineconeApiError:
    return PineconeApiError(400, _INVALID_ARGUMENT, message)


@dataclass
class _Record:
    values: np.ndarray
    metadata: dict[str, Any]


@dataclass
class PineconeIndexSimulator:
    dimension: int = 384
    metric: str = "cosine"  # cosine | dotproduct | euclidean
    api_key: str = "pc-test-key"
    namespaces: dict[str, dict[str, _Record]] = field(default_factory=dict)
    api_versions: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/vectors/upsert", self._endpoint(self.upsert), methods=["POST"]),
            Route("/query", self._endpoint(self.query), methods=["POST"]),
            Route("/vectors/fetch", self._endpoint(self.fetch), methods=["GET"]),
            Route("/vectors/delete", self._endpoint(self.delete), methods=["POST"]),
            Route("/describe_index_stats", self._endpoint(self.stats), methods=["POST"]),
            Route("/namespaces/{namespace:str}", self._endpoint(self.describe_namespace), methods=["GET"]),
        ])

    def _endpoint(self, handler: Callable[[dict[str, Any], Request], dict[str, Any]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                if request.headers.get("api-key") != self.api_key:
                    raise PineconeApiError(401, _UNAUTHENTICATED, "Invalid API Key")
                version = request.headers.get("x-pinecone-api-version", "")
                if not _VERSION_RE.fullmatch(version):
                    raise _bad("missing or malformed X-Pinecone-Api-Version header")
                self.api_versions.append(version)
                raw = await request.body()
                if request.method == "POST" and len(raw) > MAX_UPSERT_BYTES:
                    raise PineconeApiError(413, 3, f"request size {len(raw)} exceeds {MAX_UPSERT_BYTES} bytes")
                body: Any = {}
                if request.method == "POST":
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        raise _bad("request body is not valid JSON") from None
                    if not isinstance(body, dict):
                        raise _bad("request body must be a JSON object")
                with self._lock:
                    return JSONResponse(handler(body, request))
            except PineconeApiError as exc:
                return JSONResponse({"code": exc.code, "message": exc.message, "details": []}, status_code=exc.status)
        return endpoint

    # -- operations ---------------------------------------------------------------------------------
    def upsert(self, body: dict[str, Any], _: Request) -> dict[str, Any]:
        _only(body, {"vectors", "namespace"})
        vectors, namespace = body.get("vectors"), _namespace(body)
        if not isinstance(vectors, list) or not vectors:
            raise _bad("vectors must be a non-empty array")
        if len(vectors) > MAX_UPSERT_VECTORS:
            raise _bad(f"Batch size exceeds {MAX_UPSERT_VECTORS}. Reduce the number of vectors in the batch")
        parsed: dict[str, _Record] = {}
        for v in vectors:
            if not isinstance(v, dict):
                raise _bad("each vector must be an object")
            _only(v, {"id", "values", "metadata", "sparseValues"})
            vid = _vector_id(v.get("id"))
            parsed[vid] = _Record(self._values(v.get("values")), _metadata(v.get("metadata")))
        self.namespaces.setdefault(namespace, {}).update(parsed)
        return {"upsertedCount": len(vectors)}

    def query(self, body: dict[str, Any], _: Request) -> dict[str, Any]:
        _only(body, {"topK", "vector", "id", "namespace", "filter", "includeValues", "includeMetadata",
                     "sparseVector"})
        top_k, namespace = body.get("topK"), _namespace(body)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise _bad(f"topK must be an integer from 1 to {MAX_TOP_K}")
        if ("vector" in body) == ("id" in body):
            raise _bad("exactly one of vector or id must be given")
        records = self.namespaces.get(namespace, {})
        if "id" in body:
            anchor = records.get(_vector_id(body["id"]))
            if anchor is None:
                return {"matches": [], "namespace": namespace, "usage": {"readUnits": 1}}
            query = anchor.values
        else:
            query = self._values(body["vector"])
        matcher = _compile(body["filter"]) if body.get("filter") is not None else (lambda md: True)
        scored = [(vid, self._score(query, r.values)) for vid, r in records.items() if matcher(r.metadata)]
        scored.sort(key=lambda t: t[1], reverse=self.metric != "euclidean")
        matches = []
        for vid, score in scored[:top_k]:
            match: dict[str, Any] = {"id": vid, "score": score, "values": []}
            if body.get("includeValues"):
                match["values"] = [float(x) for x in records[vid].values]
            if body.get("includeMetadata") and records[vid].metadata:
                match["metadata"] = records[vid].metadata
            matches.append(match)
        return {"matches": matches, "namespace": namespace, "usage": {"readUnits": max(1, len(records) // 1000)}}

    def fetch(self, _: dict[str, Any], request: Request) -> dict[str, Any]:
        unknown = set(request.query_params) - {"ids", "namespace"}
        if unknown:
            raise _bad(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        ids = [_vector_id(i) for i in request.query_params.getlist("ids")]
        if not ids:
            raise _bad("ids must be given")
        namespace = request.query_params.get("namespace", "")
        records = self.namespaces.get(namespace, {})
        found = {i: {"id": i, "values": [float(x) for x in records[i].values],
                     **({"metadata": records[i].metadata} if records[i].metadata else {})}
                 for i in ids if i in records}
        return {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}

    def delete(self, body: dict[str, Any], _: Request) -> dict[str, Any]:
        _only(body, {"ids", "deleteAll", "filter", "namespace"})
        namespace = _namespace(body)
        selectors = [k for k in ("ids", "deleteAll", "filter") if body.get(k) not in (None, False)]
        if len(selectors) != 1:
            raise _bad("exactly one of ids, deleteAll or filter must be given")
        if namespace not in self.namespaces:
            raise PineconeApiError(404, _NOT_FOUND, "Namespace not found")
        records = self.namespaces[namespace]
        if body.get("deleteAll"):
            del self.namespaces[namespace]
        elif "ids" in selectors:
            if not isinstance(body["ids"], list) or len(body["ids"]) > 1000:
                raise _bad("ids must be an array of at most 1000 ids")
            for vid in body["ids"]:
                records.pop(_vector_id(vid), None)
        else:
            if not isinstance(body["filter"], dict) or not body["filter"]:
                raise _bad("filter must be a non-empty object")
            matcher = _compile(body["filter"])
            for vid in [v for v, r in records.items() if matcher(r.metadata)]:
                del records[vid]
        if namespace in self.namespaces and not self.namespaces[namespace]:
            del self.namespaces[namespace]
        return {}

    def stats(self, body: dict[str, Any], _: Request) -> dict[str, Any]:
        _only(body, {"filter"})
        if body.get("filter"):
            raise _bad("describe_index_stats does not support filtering on serverless indexes")
        counts = {ns: len(records) for ns, records in self.namespaces.items() if records}
        return {"namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()}, "dimension": self.dimension,
                "indexFullness": 0.0, "totalVectorCount": sum(counts.values()), "metric": self.metric,
                "vectorType": "dense"}

    def describe_namespace(self, _: dict[str, Any], request: Request) -> dict[str, Any]:
        name = request.path_params["namespace"]
        records = self.namespaces.get(name)
        if not records:
            raise PineconeApiError(404, _NOT_FOUND, "Namespace not found")
        return {"name": name, "record_count": str(len(records))}  # Pinecone sends the count as a string

    # -- helpers ------------------------------------------------------------------------------------
    def _values(self, raw: object) -> np.ndarray:
        if not isinstance(raw, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in raw):
            raise _bad("values must be an array of numbers")
        if len(raw) != self.dimension:
            raise _bad(f"Vector dimension {len(raw)} does not match the dimension of the index {self.dimension}")
        if not all(math.isfinite(x) for x in raw):
            raise _bad("values must be finite")
        values = np.asarray(raw, dtype=np.float32)
        if self.metric == "cosine" and not np.any(values):
            raise _bad("Dense vectors must contain at least one non-zero value")
        return values

    def _score(self, q: np.ndarray, v: np.ndarray) -> float:
        q64, v64 = q.astype(np.float64), v.astype(np.float64)
        if self.metric == "euclidean":
            return float(((q64 - v64) ** 2).sum())
        dot = float(q64 @ v64)
        if self.metric == "dotproduct":
            return dot
        return dot / float(np.linalg.norm(q64) * np.linalg.norm(v64))


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(sorted(unknown))}")


def _namespace(body: dict[str, Any]) -> str:
    namespace = body.get("namespace", "")
    if not isinstance(namespace, str):
        raise _bad("namespace must be a string")
    return namespace


def _vector_id(raw: object) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 512 or not raw.isascii():
        raise _bad("vector ids are ASCII strings of 1-512 characters")
    return raw


def _metadata(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad("metadata must be an object")
    for key, value in raw.items():
        ok = (isinstance(value, str | bool) or (isinstance(value, int | float) and math.isfinite(value))
              or (isinstance(value, list) and all(isinstance(x, str) for x in value)))
        if not ok:
            raise _bad(f"Metadata value for field {key!r} must be a string, number, boolean or list of strings")
    if len(json.dumps(raw).encode()) > MAX_METADATA_BYTES:
        raise _bad(f"Metadata size exceeds the limit of {MAX_METADATA_BYTES} bytes per vector")
    return dict(raw)


# -- Pinecone's filter language ---------------------------------------------------------------------
Matcher = Callable[[dict[str, Any]], bool]


def _compile(flt: object) -> Matcher:
    if not isinstance(flt, dict) or not flt:
        raise _bad("a filter must be a non-empty object")
    parts: list[Matcher] = []
    for key, value in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _bad(f"{key} must be a non-empty array")
            subs = [_compile(v) for v in value]
            parts.append((lambda s: lambda md: all(m(md) for m in s))(subs) if key == "$and"
                         else (lambda s: lambda md: any(m(md) for m in s))(subs))
        elif key.startswith("$"):
            raise _bad(f"unsupported top-level operator {key}")
        elif isinstance(value, dict):
            if not value:
                raise _bad(f"empty operator object for field {key}")
            parts.extend(_field(key, op, operand) for op, operand in value.items())
        else:
            parts.append(_field(key, "$eq", value))
    return lambda md: all(p(md) for p in parts)


def _same(a: object, b: object) -> bool:
    a_num = isinstance(a, int | float) and not isinstance(a, bool)
    b_num = isinstance(b, int | float) and not isinstance(b, bool)
    if a_num or b_num:
        return a_num and b_num and float(a) == float(b)  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


def _field(key: str, op: str, operand: Any) -> Matcher:
    def values(md: dict[str, Any]) -> list[Any]:
        v = md.get(key)
        return [] if v is None else (v if isinstance(v, list) else [v])

    scalar = isinstance(operand, str | bool) or (isinstance(operand, int | float) and math.isfinite(operand))
    number = isinstance(operand, int | float) and not isinstance(operand, bool) and math.isfinite(operand)
    if op in ("$eq", "$ne"):
        if not scalar:
            raise _bad(f"{op} operand for {key} must be a string, number or boolean")
        if op == "$eq":
            return lambda md: any(_same(v, operand) for v in values(md))
        return lambda md: bool(values(md)) and not any(_same(v, operand) for v in values(md))
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not number:
            raise _bad(f"{op} operand for {key} must be a number")
        cmp = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}[op]
        return lambda md: any(isinstance(v, int | float) and not isinstance(v, bool) and cmp(float(v), float(operand))
                              for v in values(md))
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand or not all(
                isinstance(x, str) or (isinstance(x, int | float) and not isinstance(x, bool)) for x in operand):
            raise _bad(f"{op} operand for {key} must be a non-empty array of strings or numbers")
        if op == "$in":
            return lambda md: any(_same(v, o) for v in values(md) for o in operand)
        return lambda md: bool(values(md)) and not any(_same(v, o) for v in values(md) for o in operand)
    if op == "$exists":
        if not isinstance(operand, bool):
            raise _bad(f"$exists operand for {key} must be a boolean")
        return lambda md: bool(values(md)) == operand
    raise _bad(f"unsupported operator {op}")
