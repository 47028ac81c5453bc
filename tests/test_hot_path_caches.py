"""The per-call lookups (token, credential rows) are cached briefly; a change made here is seen at once."""

from __future__ import annotations

from sqlalchemy import delete

from ionflux.core.db import Database
from ionflux.core.models import Credential
from ionflux.core.settings import Settings
from ionflux.core.vault import Vault
from ionflux.core.vault.keys import keyring_from_settings
from ionflux.core.workspaces import WorkspaceDirectory


async def test_revoked_token_is_refused_at_once_despite_the_cache(database: Database) -> None:
    directory = WorkspaceDirectory(database, token_cache_seconds=60)
    created = await directory.create("acme")
    assert await directory.workspace_for_token(created.token) == created.id
    assert await directory.workspace_for_token(created.token) == created.id  # served from the cache
    assert await directory.revoke(created.id, created.token[:10]) == 1
    assert await directory.workspace_for_token(created.token) is None
    assert await directory.workspace_for_token("ifx_unknown") is None


async def test_credential_rows_are_cached_but_a_put_is_seen_at_once(database: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, database_url=database.url)
    vault = Vault(database, keyring_from_settings(settings), cache_seconds=60)
    directory = WorkspaceDirectory(database)
    ws = (await directory.create("acme")).id
    await vault.put(ws, "openai", {"api_key": "sk-first-0000000000"})
    assert (await vault.resolve(ws, "openai")).secrets["api_key"] == "sk-first-0000000000"
    await vault.put(ws, "openai", {"api_key": "sk-second-000000000"})
    assert (await vault.resolve(ws, "openai")).secrets["api_key"] == "sk-second-000000000"
    # A row removed behind the vault's back is still served from the cache until it is dropped...
    async with database.system() as session:
        await session.execute(delete(Credential).where(Credential.workspace_id == ws))
    assert (await vault.resolve(ws, "openai")).source == "workspace"
    vault.forget_cached()
    # ...and a delete through the vault is seen at once.
    await vault.put(ws, "anthropic", {"api_key": "sk-ant-00000000000"})
    await vault.resolve(ws, "anthropic")
    await vault.delete(ws, "anthropic")
    import pytest

    from ionflux.core.errors import NotFound

    with pytest.raises(NotFound):
        await vault.resolve(ws, "anthropic")


async def test_cached_credential_rows_are_still_decrypted_on_every_call(database: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The rule: keys are decrypted per call only. The cache holds encrypted rows, never a plaintext.
    settings = Settings(data_dir=tmp_path, database_url=database.url)
    keyring = keyring_from_settings(settings)
    vault = Vault(database, keyring, cache_seconds=60)
    ws = (await WorkspaceDirectory(database).create("acme")).id
    await vault.put(ws, "openai", {"api_key": "sk-first-0000000000"})
    unwraps = 0
    unwrap = keyring.unwrap

    async def counting(*args: object) -> bytes:
        nonlocal unwraps
        unwraps += 1
        return await unwrap(*args)  # type: ignore[arg-type]

    keyring.unwrap = counting  # type: ignore[method-assign]
    for _ in range(3):
        assert (await vault.resolve(ws, "openai")).secrets["api_key"] == "sk-first-0000000000"
    assert unwraps == 3
