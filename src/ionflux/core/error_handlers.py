"""The one place where errors become HTTP responses: `{"error": {"code", "message", "field"?}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ionflux.core.db import TenancyViolation
from ionflux.core.errors import IonfluxError
from ionflux.core.observability import request_id_var

log = logging.getLogger("ionflux.errors")

_STATUS_CODES = {400: "INVALID_REQUEST", 401: "AUTH_FAILED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                 405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
                 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMITED"}


def _body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    error.update(extra)
    rid = request_id_var.get()
    if rid:
        error["request_id"] = rid
    return {"error": error}


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return f"malformed JSON body: {ctx.get('error', 'cannot be parsed')}", "body"
    field = _field_path(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        msg = "unknown field"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{field}: {msg}{more}", field or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IonfluxError)
    async def _ionflux(_: Request, exc: IonfluxError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("request failed: %s: %s", exc.code, exc.message)
        return JSONResponse(_body(exc.code, exc.message, exc.field, **({"details": exc.details}
                                                                          if exc.details else {})),
                            status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = validation_message(exc)
        return JSONResponse(_body("INVALID_REQUEST", message, field), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(TenancyViolation)
    async def _tenancy(_: Request, exc: TenancyViolation) -> JSONResponse:
        log.error("tenancy violation: %s", exc)
        return JSONResponse(_body("INTERNAL_ERROR", "internal error"), status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", type(exc).__name__)
        return JSONResponse(_body("INTERNAL_ERROR", "internal error; quote the request id to support"),
                            status_code=500)
