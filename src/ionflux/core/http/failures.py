"""Every provider failure becomes one IonfluxError, with the provider's body attached but never a secret.

Mapping (HTTP status from the provider → error):
  429, or a body that says throttled       → RateLimited        (details.retry_after when known)
  401, 403                                  → AuthFailed         (the credential is wrong, revoked or lacks scope)
  400, 422                                  → InvalidRequest     (refused content: the caller can fix it)
  404 and any other 4xx                     → ProviderApiError   (a 404 is as often a wrong URL or API version as a
                                                                  missing object; a service that knows better maps
                                                                  it to NotFound itself)
  5xx, connection errors, timeouts, open circuit → ProviderUnavailable
  a body that cannot be decoded (bad gzip…)  → ProviderApiError
Request headers never go into an error or a log line. The body is truncated, the values of the request's
credential headers are cut out of it verbatim (providers echo tokens back), then it goes through redact().
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ionflux.core.errors import (
    AuthFailed,
    InvalidRequest,
    IonfluxError,
    ProviderApiError,
    ProviderUnavailable,
    RateLimited,
)
from ionflux.core.observability import redact

_SENSITIVE_NAME_PARTS = ("auth", "token", "secret", "key", "signature", "cookie", "session", "password")
_REDACTED = "[REDACTED]"


def secret_values(headers: Mapping[str, str], extra_names: Iterable[str] = ()) -> list[str]:
    """The values of credential-bearing request headers, and the token inside `Scheme token` values."""
    names = {n.lower() for n in extra_names}
    found: list[str] = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in names or any(part in lowered for part in _SENSITIVE_NAME_PARTS):
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                found.append(token)
    return sorted({v for v in found if len(v) >= 4}, key=len, reverse=True)


def safe_text(text: str, secrets: Iterable[str], limit: int) -> str:
    """Cut known secrets out of a provider's text, redact secret-looking runs, truncate."""
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    truncated = len(text) > limit
    text = redact(text[:limit])
    return text + "…[truncated]" if truncated else text


def safe_path(url: httpx.URL) -> str:
    """The URL path only: a query string may carry an API key."""
    return redact(url.path)


def error_for_response(
    provider: str,
    response: httpx.Response,
    *,
    secrets: Iterable[str],
    body_limit: int,
    attempts: int,
    retry_after: float | None = None,
    throttled: bool = False,
) -> IonfluxError:
    status = response.status_code
    method = response.request.method
    path = safe_path(response.request.url)
    details: dict[str, Any] = {"provider": provider, "status": status, "method": method, "path": path}
    details["attempts"] = attempts
    body = safe_text(response.text, secrets, body_limit) if response.content else ""
    if body:
        details["provider_body"] = body
    if status == 429 or throttled:
        if retry_after is not None:
            details["retry_after"] = round(retry_after, 3)
        return RateLimited(f"{provider} rate limit reached; try again later", details=details)
    if status in (401, 403):
        return AuthFailed(
            f"{provider} refused the credential ({status}): reconnect the integration or check its scopes",
            details=details,
        )
    if status in (400, 422):
        return InvalidRequest(f"{provider} rejected the request as invalid ({status})", details=details)
    if status >= 500:
        if retry_after is not None:
            details["retry_after"] = round(retry_after, 3)
        return ProviderUnavailable(f"{provider} failed with {status}; try again later", details=details)
    return ProviderApiError(f"{provider} answered {status} to {method} {path}", details=details)


def error_for_transport(provider: str, method: str, url: httpx.URL, exc: BaseException, attempts: int) -> IonfluxError:
    if isinstance(exc, httpx.DecodingError):
        return ProviderApiError(
            f"{provider} sent a response that could not be decoded",
            details={
                "provider": provider,
                "method": method,
                "path": safe_path(url),
                "reason": "bad_response",
                "attempts": attempts,
            },
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        reason, text = "timeout", "did not answer in time"
    elif isinstance(exc, httpx.ConnectError):
        reason, text = "connect_error", "could not be reached"
    else:
        reason, text = "connection_error", "dropped the connection"
    return ProviderUnavailable(
        f"{provider} {text}; try again later",
        details={
            "provider": provider,
            "method": method,
            "path": safe_path(url),
            "reason": reason,
            "error": type(exc).__name__,
            "attempts": attempts,
        },
    )


def transport_reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.DecodingError):
        return "bad_response"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    return "connection_error"
