"""One error hierarchy with stable codes, mapped to HTTP once (see `install_error_handlers`)."""

from __future__ import annotations

from typing import Any, ClassVar


class IonfluxError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class InvalidRequest(IonfluxError):
    code = "INVALID_REQUEST"
    http_status = 400


class PayloadTooLarge(IonfluxError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class AuthFailed(IonfluxError):
    code = "AUTH_FAILED"
    http_status = 401


class Forbidden(IonfluxError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(IonfluxError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(IonfluxError):
    code = "CONFLICT"
    http_status = 409


class RateLimited(IonfluxError):
    code = "RATE_LIMITED"
    http_status = 429


class QuotaExceeded(IonfluxError):
    code = "QUOTA_EXCEEDED"
    http_status = 429


class ProviderApiError(IonfluxError):
    code = "PROVIDER_API_ERROR"
    http_status = 502


class ProviderUnavailable(IonfluxError):
    code = "PROVIDER_UNAVAILABLE"
    http_status = 503


class ServiceUnavailable(IonfluxError):
    code = "SERVICE_UNAVAILABLE"
    http_status = 503


class VaultError(IonfluxError):
    """A credential could not be decrypted (tampered, moved, or wrong master key)."""

    code = "VAULT_ERROR"
    http_status = 500


class OutsideServiceWindow(IonfluxError):
    """WhatsApp: free-form messages need the user's last message within 24 h; send an approved template."""

    code = "OUTSIDE_SERVICE_WINDOW"
    http_status = 400


class ContentFiltered(IonfluxError):
    """An LLM provider's content filter refused the prompt or cut the answer."""

    code = "CONTENT_FILTERED"
    http_status = 422
