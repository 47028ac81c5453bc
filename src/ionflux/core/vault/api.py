"""HTTP: a workspace stores, lists, describes and deletes its own provider credentials.

Responses carry metadata and a hint (the last 4 characters) only: a secret goes in and never comes out.
Validation of provider, name and secrets lives in the vault, so every caller gets the same rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ionflux.core.auth import PlatformDep, WorkspaceId
from ionflux.core.vault.bundle import CredentialInfo

router = APIRouter(prefix="/v1/credentials", tags=["credentials"])


class CredentialPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secrets: dict[str, str] = Field(description="field name -> secret value, e.g. {\"api_key\": \"sk-...\"}")
    name: str = Field(default="default", description="several credentials of one provider differ by name")
    meta: dict[str, Any] | None = Field(default=None, description="non-secret notes, stored in clear")


class CredentialOut(BaseModel):
    provider: str
    name: str
    fields: list[str]
    hints: dict[str, str] = Field(description="field -> '…' + last 4 characters (none for short secrets)")
    hint: str = Field(description="the hint of the longest field")
    source: Literal["workspace", "platform"]
    meta: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, info: CredentialInfo) -> CredentialOut:
        return cls(
            provider=info.provider, name=info.name, fields=info.fields, hints=info.hints, hint=info.hint,
            source=info.source, meta=info.meta, created_at=info.created_at, updated_at=info.updated_at,
        )


class CredentialList(BaseModel):
    credentials: list[CredentialOut]


NameQuery = Query(default="default", description="which of the provider's credentials")


@router.put("/{provider}")
async def put_credential(
    provider: str, body: CredentialPut, workspace_id: WorkspaceId, platform: PlatformDep
) -> CredentialOut:
    info = await platform.vault.put(workspace_id, provider, body.secrets, name=body.name, meta=body.meta)
    return CredentialOut.of(info)


@router.get("")
async def list_credentials(workspace_id: WorkspaceId, platform: PlatformDep) -> CredentialList:
    return CredentialList(credentials=[CredentialOut.of(i) for i in await platform.vault.list(workspace_id)])


@router.get("/{provider}")
async def describe_credential(
    provider: str, workspace_id: WorkspaceId, platform: PlatformDep, name: str = NameQuery
) -> CredentialOut:
    return CredentialOut.of(await platform.vault.describe(workspace_id, provider, name))


@router.delete("/{provider}", status_code=204)
async def delete_credential(
    provider: str, workspace_id: WorkspaceId, platform: PlatformDep, name: str = NameQuery
) -> Response:
    await platform.vault.delete(workspace_id, provider, name)
    return Response(status_code=204)
