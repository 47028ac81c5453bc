"""Business phone numbers: a `Connection` per number (external_id = phone_number_id, which is how webhooks find
the workspace) and its access token in the vault; the platform's system-user token is the default."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ionflux.core.errors import AuthFailed, Conflict, InvalidRequest, NotFound
from ionflux.core.models import Connection
from ionflux.core.platform import Platform
from ionflux.core.ttl_cache import TtlCache

PROVIDER = "whatsapp"
GRAPH_ID = re.compile(r"^\d{1,30}$")


class NumberInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone_number_id: str
    waba_id: str
    display_phone_number: str = Field(min_length=1, max_length=32)
    access_token: str | None = Field(default=None, min_length=8, max_length=4096)
    messages_per_second: float | None = Field(default=None, gt=0, le=1000)


@dataclass(frozen=True)
class Number:
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    messages_per_second: float | None
    token_source: str  # "workspace" (its own token) or "platform" (the system-user token)
    credential_name: str

    def view(self) -> dict[str, Any]:
        return {"phone_number_id": self.phone_number_id, "waba_id": self.waba_id,
                "display_phone_number": self.display_phone_number, "messages_per_second": self.messages_per_second,
                "token_source": self.token_source}


def _number(row: Connection) -> Number:
    meta = row.meta or {}
    return Number(row.external_id, str(meta.get("waba_id", "")), str(meta.get("display_phone_number", "")),
                  meta.get("messages_per_second"), "workspace" if row.credential_name != "default" else "platform",
                  row.credential_name)


class NumberDirectory:
    def __init__(self, platform: Platform, *, cache_seconds: float = 5.0,
                 platform_wabas: Iterable[str] = ()) -> None:
        self.platform = platform
        self.platform_wabas = frozenset(platform_wabas)
        # A send looks its number up; numbers change rarely.
        self._cache: TtlCache[str, list[Number]] = TtlCache(cache_seconds)

    async def add(self, workspace_id: str, given: NumberInput) -> tuple[Number, bool]:
        """Connect (or update) a number; returns it and whether it was new."""
        for name in ("phone_number_id", "waba_id"):
            if not GRAPH_ID.match(getattr(given, name)):
                raise InvalidRequest(f"{name} must be Meta's numeric id", field=name)
        if not given.access_token and self.platform_wabas and given.waba_id not in self.platform_wabas:
            raise InvalidRequest("this number is not on the platform's WhatsApp Business Account: give its "
                                 "access_token", field="access_token")
        credential = f"number-{given.phone_number_id}" if given.access_token else "default"
        meta = {"kind": "number", "waba_id": given.waba_id, "display_phone_number": given.display_phone_number,
                "messages_per_second": given.messages_per_second}
        try:
            async with self.platform.db.tenant(workspace_id) as session:
                row = await session.scalar(select(Connection).where(
                    Connection.provider == PROVIDER, Connection.external_id == given.phone_number_id))
                created = row is None
                if row is None:
                    row = Connection(provider=PROVIDER, external_id=given.phone_number_id)
                    session.add(row)
                row.credential_name, row.meta, row.status = credential, meta, "active"
                await session.flush()
                number = _number(row)
        except IntegrityError:
            raise Conflict("this phone_number_id is connected to another workspace",
                           field="phone_number_id") from None
        self._cache.forget(workspace_id)
        if given.access_token:
            await self.platform.vault.put(workspace_id, PROVIDER, {"access_token": given.access_token},
                                          name=credential, meta={"phone_number_id": given.phone_number_id})
        await self._claim_waba(workspace_id, given.waba_id)
        return number, created

    async def _claim_waba(self, workspace_id: str, waba_id: str) -> None:
        """Template status webhooks name only the WABA: route them to the first workspace that connected it."""
        async with self.platform.db.system() as session:
            owner = await session.scalar(select(Connection.id).where(
                Connection.provider == PROVIDER, Connection.external_id == waba_id))
        if owner is not None:
            return
        try:
            async with self.platform.db.tenant(workspace_id) as session:
                session.add(Connection(provider=PROVIDER, external_id=waba_id, meta={"kind": "waba"}))
        except IntegrityError:
            pass  # another workspace claimed it meanwhile

    async def _load(self, workspace_id: str) -> list[Number]:
        async with self.platform.db.tenant(workspace_id) as session:
            rows = (await session.scalars(select(Connection).where(Connection.provider == PROVIDER)
                                          .order_by(Connection.created_at))).all()
        return [_number(r) for r in rows if (r.meta or {}).get("kind") == "number" and r.status == "active"]

    async def list(self, workspace_id: str, *, fresh: bool = True) -> list[Number]:
        """The workspace's numbers; `fresh=False` may answer from a cache up to `cache_seconds` old."""
        if fresh:
            self._cache.forget(workspace_id)
        return await self._cache.get(workspace_id, lambda: self._load(workspace_id))

    async def pick(self, workspace_id: str, phone_number_id: str | None) -> Number:
        numbers = await self.list(workspace_id, fresh=False)
        if phone_number_id is not None:
            for number in numbers:
                if number.phone_number_id == phone_number_id:
                    return number
            raise NotFound(f"this workspace has no WhatsApp number {phone_number_id!r}", field="phone_number_id")
        if len(numbers) == 1:
            return numbers[0]
        if not numbers:
            raise NotFound("this workspace has no WhatsApp number: POST /v1/whatsapp/numbers first",
                           field="phone_number_id")
        raise InvalidRequest("this workspace has several WhatsApp numbers: name one in phone_number_id",
                             field="phone_number_id")

    async def by_waba(self, workspace_id: str, waba_id: str | None) -> Number:
        numbers = await self.list(workspace_id)
        for number in numbers:
            if waba_id is None or number.waba_id == waba_id:
                return number
        raise NotFound("this workspace has no WhatsApp number on that business account", field="waba_id")

    async def token(self, workspace_id: str, number: Number) -> str:
        """The number's own token, else the workspace's default WhatsApp token, else the platform's."""
        vault = self.platform.vault
        try:
            if number.credential_name != "default":
                bundle = await vault.get(workspace_id, PROVIDER, number.credential_name)
            else:
                bundle = (await vault.resolve(workspace_id, PROVIDER, "default")).secrets
            return bundle["access_token"]
        except (NotFound, KeyError):
            raise AuthFailed("no WhatsApp access token: give the number's access_token, or set the platform's "
                             "IONFLUX_WHATSAPP_ACCESS_TOKEN") from None
