"""OAuth failures, in the one IonfluxError hierarchy. Messages never carry a token, code or secret."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ionflux.core.errors import InvalidRequest, IonfluxError, ProviderApiError

StateProblem = Literal["missing", "unknown", "used", "expired", "mismatch"]


class OAuthStateError(InvalidRequest):
    """The callback's `state` is missing, unknown, already used, expired, or bound to something else."""

    def __init__(self, problem: StateProblem, message: str) -> None:
        super().__init__(message, field="state", details={"problem": problem})
        self.problem: StateProblem = problem


class AuthorizationDenied(InvalidRequest):
    """The provider redirected back with `error=` (the user declined, or the request was refused)."""


class ReauthorizationRequired(IonfluxError):
    """The connection cannot get a token any more (refresh refused, revoked): a person must reconnect."""

    code = "REAUTH_REQUIRED"
    http_status = 409


class TokenEndpointError(ProviderApiError):
    """The provider's token or revocation endpoint answered with an error (RFC 6749 §5.2 body)."""

    def __init__(self, message: str, *, status: int, error: str | None) -> None:
        super().__init__(message, details={"status": status, "error": error})
        self.status = status
        self.error = error


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret value in it replaced, for provider messages that echo a request."""
    for value in secrets:
        if value and len(value) >= 6:
            text = text.replace(value, "[redacted]")
    return text
