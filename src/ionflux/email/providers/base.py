"""What every provider adapter speaks: outbound messages in, one outcome per message out, failures classified.

The classification is what dispatch decides on: `unavailable` (the provider answered 5xx or was never reached:
nothing was accepted, so another provider may send it), `throttled` (try the same provider later), `rejected`
(the content or recipient is refused: final), `auth` (our credential is refused: final until fixed) and
`ambiguous` (the request may have been accepted: never re-sent anywhere, so nobody gets it twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ionflux.email.addresses import Address

FailureKind = Literal["unavailable", "throttled", "rejected", "auth", "ambiguous"]


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    id: str  # ours: the Message-ID's left part, SendGrid custom_args, SES tags
    workspace_id: str
    sender: Address
    to: list[Address]
    subject: str
    text: str | None = None  # may hold substitution tags, filled from `substitutions`
    html: str | None = None
    substitutions: dict[str, str] = field(default_factory=dict)
    cc: Sequence[Address] = ()
    bcc: Sequence[Address] = ()
    reply_to: Address | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    @property
    def recipients(self) -> list[Address]:
        return [*self.to, *self.cc, *self.bcc]


class ProviderFailure(Exception):
    def __init__(self, kind: FailureKind, message: str, *, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class Accepted:
    provider_message_id: str | None
    refused: list[tuple[str, str]] = field(default_factory=list)  # (recipient, reason) the server refused


Outcome = Accepted | ProviderFailure


@dataclass(frozen=True)
class Account:
    """Which credential a send uses: the workspace's own (vault) or the platform's."""

    workspace_id: str
    secrets: dict[str, str]
    source: str  # "workspace" | "platform" | "none"

    def __repr__(self) -> str:  # never show the secrets
        return f"Account(workspace_id={self.workspace_id!r}, source={self.source!r}, fields={sorted(self.secrets)})"


class EmailProvider(Protocol):
    name: str
    max_messages_per_call: int  # how many messages one `send` may take (dispatch splits to this)
    needs_credential: bool

    async def send(self, account: Account, messages: list[OutboundMessage]) -> list[Outcome]:
        """One outcome per message, in order. Raise nothing for a per-message failure: return it."""
        ...

    async def aclose(self) -> None: ...
