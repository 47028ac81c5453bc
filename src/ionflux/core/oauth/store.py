"""Where a connection's tokens live: one vault credential per connection, never the connections table.

The bundle carries its own expiry (`expires_at`) so that a reader gets token and freshness from one
atomic vault read; `connections.token_expires_at` is a copy for listing and monitoring only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ionflux.core.errors import NotFound
from ionflux.core.oauth.tokens import TokenSet
from ionflux.core.vault import Vault


def token_credential_name(connection_id: str) -> str:
    return f"oauth-{connection_id}".lower()


@dataclass(frozen=True)
class StoredTokens:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None  # None: the provider gave no lifetime (e.g. Stripe Connect tokens)
    refresh_expires_at: datetime | None

    def fresh(self, now: datetime, skew: timedelta) -> bool:
        return self.expires_at is None or self.expires_at - skew > now

    def __repr__(self) -> str:
        return f"StoredTokens(expires_at={self.expires_at}, refresh_token={'yes' if self.refresh_token else 'no'})"

    @classmethod
    def issued(cls, tokens: TokenSet, now: datetime, previous: StoredTokens | None = None) -> StoredTokens:
        """The tokens to keep after a grant or refresh: always the newest refresh token (rotation);
        the previous one only when the provider sent none (it did not rotate)."""
        refresh: str | None
        refresh_expires: datetime | None
        if tokens.refresh_token:
            refresh, refresh_expires = tokens.refresh_token, _after(now, tokens.refresh_expires_in)
        elif previous is not None:
            refresh, refresh_expires = previous.refresh_token, previous.refresh_expires_at
        else:
            refresh, refresh_expires = None, None
        return cls(tokens.access_token, refresh, _after(now, tokens.expires_in), refresh_expires)


def _after(now: datetime, seconds: int | None) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds is not None else None


async def load_tokens(vault: Vault, workspace_id: str, provider: str, name: str) -> StoredTokens | None:
    try:
        bundle = await vault.get(workspace_id, provider, name)
    except NotFound:
        return None
    if "access_token" not in bundle:
        return None
    return StoredTokens(
        access_token=bundle["access_token"], refresh_token=bundle.get("refresh_token"),
        expires_at=_parse(bundle.get("expires_at")), refresh_expires_at=_parse(bundle.get("refresh_expires_at")),
    )


async def save_tokens(vault: Vault, workspace_id: str, provider: str, name: str, tokens: StoredTokens) -> None:
    fields: dict[str, str | None] = {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
              "expires_at": _format(tokens.expires_at), "refresh_expires_at": _format(tokens.refresh_expires_at)}
    secrets = {k: v for k, v in fields.items() if v}
    await vault.put(workspace_id, provider, secrets, name=name,
                    meta={"kind": "oauth-tokens"}, origin="oauth")


async def delete_tokens(vault: Vault, workspace_id: str, provider: str, name: str) -> None:
    try:
        await vault.delete(workspace_id, provider, name)
    except NotFound:
        pass


def _format(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
