"""The credential vault: secrets round-trip, stay bound to their owner, survive rotation, never leak."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest, NotFound, VaultError
from ionflux.core.models import PLATFORM_WORKSPACE, Credential
from ionflux.core.vault import PLATFORM_CATALOGUE, SecretBundle, Vault
from ionflux.core.vault.keys import FileKeyring

SECRET = "sk-live-9f8e7d6c5b4a39281706abcd"
OTHER_SECRET = "sk-other-0a1b2c3d4e5f60718293wxyz"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "master.key"


@pytest.fixture
def vault(database: Database, key_file: Path) -> Vault:
    return Vault(database, FileKeyring(key_file), rotate_batch_size=7)


async def _row(db: Database, workspace_id: str, provider: str, name: str = "default") -> Credential:
    async with db.system() as s:
        row = await s.scalar(select(Credential).where(
            Credential.workspace_id == workspace_id, Credential.provider == provider, Credential.name == name))
    assert row is not None
    return row


async def _set(db: Database, row_id: str, **values: Any) -> None:
    async with db.system() as s:
        await s.execute(update(Credential).where(Credential.id == row_id).values(**values)
                        .execution_options(synchronize_session=False))


async def test_round_trip_describe_list_delete(vault: Vault) -> None:
    info = await vault.put("ws-a", "openai", {"api_key": SECRET}, meta={"label": "prod"})
    assert (info.provider, info.name, info.fields, info.source) == ("openai", "default", ["api_key"], "workspace")
    assert info.hint == "…abcd" and info.hints == {"api_key": "…abcd"}
    assert info.meta == {"label": "prod"}

    bundle = await vault.get("ws-a", "openai")
    assert bundle["api_key"] == SECRET and bundle.reveal("api_key") == SECRET
    assert dict(bundle) == {"api_key": SECRET}

    await vault.put("ws-a", "ses", {"access_key_id": "AKIAEXAMPLE00000", "secret_access_key": "short"})
    described = await vault.describe("ws-a", "ses")
    assert described.fields == ["access_key_id", "secret_access_key"]
    assert described.hints == {"access_key_id": "…0000", "secret_access_key": "…"}  # too short to hint
    assert [(c.provider, c.name) for c in await vault.list("ws-a")] == [("openai", "default"), ("ses", "default")]
    assert await vault.list("ws-b") == []
    with pytest.raises(NotFound):
        await vault.get("ws-b", "openai")  # another workspace never sees it

    await vault.delete("ws-a", "openai")
    with pytest.raises(NotFound):
        await vault.get("ws-a", "openai")
    with pytest.raises(NotFound):
        await vault.delete("ws-a", "openai")


async def test_put_replaces_and_keeps_meta_and_created_at(vault: Vault, database: Database) -> None:
    first = await vault.put("ws-a", "stripe", {"secret_key": SECRET}, meta={"account": "acct_1"})
    second = await vault.put("ws-a", "stripe", {"secret_key": OTHER_SECRET})
    assert (await vault.get("ws-a", "stripe"))["secret_key"] == OTHER_SECRET
    assert second.meta == {"account": "acct_1"} and second.created_at == first.created_at
    assert second.updated_at is not None and first.updated_at is not None
    assert second.updated_at >= first.updated_at
    async with database.system() as s:
        assert len((await s.scalars(select(Credential))).all()) == 1


@pytest.mark.parametrize("column", ["ciphertext", "nonce", "wrapped_key"])
async def test_a_flipped_byte_fails_to_decrypt(vault: Vault, database: Database, column: str) -> None:
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    row = await _row(database, "ws-a", "openai")
    value = bytearray(getattr(row, column))
    value[len(value) // 2] ^= 0x01
    await _set(database, row.id, **{column: bytes(value)})
    with pytest.raises(VaultError) as caught:
        await vault.get("ws-a", "openai")
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


async def test_ciphertext_moved_to_another_workspace_fails(vault: Vault, database: Database) -> None:
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    await vault.put("ws-b", "openai", {"api_key": OTHER_SECRET})
    a, b = await _row(database, "ws-a", "openai"), await _row(database, "ws-b", "openai")
    await _set(database, b.id, ciphertext=a.ciphertext, nonce=a.nonce, wrapped_key=a.wrapped_key,
               master_key_id=a.master_key_id)
    with pytest.raises(VaultError) as caught:
        await vault.get("ws-b", "openai")
    assert SECRET not in str(caught.value) and OTHER_SECRET not in str(caught.value)
    assert (await vault.get("ws-a", "openai"))["api_key"] == SECRET  # the original still opens


@pytest.mark.parametrize("target", [("anthropic", "default"), ("openai", "backup")])
async def test_ciphertext_moved_to_another_provider_or_name_fails(
    vault: Vault, database: Database, target: tuple[str, str]
) -> None:
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    row = await _row(database, "ws-a", "openai")
    await _set(database, row.id, provider=target[0], name=target[1])
    with pytest.raises(VaultError):
        await vault.get("ws-a", target[0], target[1])


async def test_rotation_rewraps_every_key_and_keeps_all_readable(
    vault: Vault, database: Database, key_file: Path
) -> None:
    owners = [(f"ws-{i % 3}", f"p{i:02d}") for i in range(20)]
    for ws, provider in owners:
        await vault.put(ws, provider, {"api_key": f"{SECRET}-{provider}"})
    await vault.put(PLATFORM_WORKSPACE, "openai", {"api_key": SECRET})
    # Another running server: its keyring was loaded before the rotation and it has read a row.
    other_server = Vault(database, FileKeyring(key_file))
    assert (await other_server.get("ws-0", "p00"))["api_key"] == f"{SECRET}-p00"
    old_key = await vault.keyring.current_key_id()
    async with database.system() as s:
        before = {r.id: (r.ciphertext, r.nonce, r.updated_at) for r in await s.scalars(select(Credential))}

    assert await vault.rotate() == 21  # 21 rows in batches of 7: three transactions and a final empty read

    new_key = await vault.keyring.current_key_id()
    assert new_key != old_key
    async with database.system() as s:
        after = list(await s.scalars(select(Credential)))
    assert {r.master_key_id for r in after} == {new_key}
    assert {r.id: (r.ciphertext, r.nonce, r.updated_at) for r in after} == before  # data untouched
    for reader in (vault, other_server):
        for ws, provider in owners:
            assert (await reader.get(ws, provider))["api_key"] == f"{SECRET}-{provider}"
    # The old server also writes under the new key now (it noticed the rewritten key file).
    await other_server.put("ws-9", "late", {"api_key": SECRET})
    assert (await _row(database, "ws-9", "late")).master_key_id == new_key
    assert await vault.rotate() == 22  # a second rotation moves everything again


async def test_rotation_never_undoes_a_concurrent_put(vault: Vault, database: Database, key_file: Path) -> None:
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    writer = Vault(database, FileKeyring(key_file))
    unwrap = vault.keyring.unwrap
    raced = False

    async def unwrap_while_someone_writes(blob: bytes, key_id: str, context: Any) -> bytes:
        nonlocal raced
        data_key = await unwrap(blob, key_id, context)
        if not raced:  # between rotation's read and its write, another server replaces the secret
            raced = True
            await writer.put("ws-a", "openai", {"api_key": OTHER_SECRET})
        return data_key

    vault.keyring.unwrap = unwrap_while_someone_writes  # type: ignore[method-assign]
    assert await vault.rotate() == 0
    assert raced
    assert (await vault.get("ws-a", "openai"))["api_key"] == OTHER_SECRET


async def test_rotation_reports_rows_it_cannot_open(vault: Vault, database: Database) -> None:
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    await vault.put("ws-a", "stripe", {"secret_key": SECRET})
    await _set(database, (await _row(database, "ws-a", "stripe")).id, master_key_id="file:gone")
    with pytest.raises(VaultError, match="1 credentials re-wrapped, 1 could not be unwrapped"):
        await vault.rotate()
    assert (await vault.get("ws-a", "openai"))["api_key"] == SECRET


async def test_resolve_prefers_the_workspace_over_the_platform(vault: Vault) -> None:
    with pytest.raises(NotFound):
        await vault.resolve("ws-a", "openai")
    await vault.put(PLATFORM_WORKSPACE, "openai", {"api_key": SECRET})
    resolved = await vault.resolve("ws-a", "openai")
    assert resolved.source == "platform" and resolved.secrets["api_key"] == SECRET

    await vault.put("ws-a", "openai", {"api_key": OTHER_SECRET})
    resolved = await vault.resolve("ws-a", "openai")
    assert resolved.source == "workspace" and resolved.secrets["api_key"] == OTHER_SECRET
    assert (await vault.resolve("ws-b", "openai")).source == "platform"  # others keep the default

    await vault.delete("ws-a", "openai")
    assert (await vault.resolve("ws-a", "openai")).source == "platform"
    with pytest.raises(NotFound):
        await vault.resolve("ws-a", "openai", "backup")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for provider, fields in PLATFORM_CATALOGUE.items():
        for f in fields:
            monkeypatch.delenv(f"IONFLUX_{provider.upper()}_{f.upper()}", raising=False)
    return monkeypatch


async def test_platform_credentials_load_from_the_environment(
    vault: Vault, database: Database, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("IONFLUX_OPENAI_API_KEY", SECRET)
    clean_env.setenv("IONFLUX_SHOPIFY_CLIENT_ID", "shopify-client-id-123")
    clean_env.setenv("IONFLUX_SHOPIFY_CLIENT_SECRET", "shpss_0123456789abcdef")
    assert await vault.load_platform_credentials() == 2
    resolved = await vault.resolve("ws-a", "shopify")
    assert resolved.source == "platform"
    assert dict(resolved.secrets) == {"client_id": "shopify-client-id-123",
                                      "client_secret": "shpss_0123456789abcdef"}
    stamp = (await _row(database, PLATFORM_WORKSPACE, "openai")).wrapped_key

    assert await vault.load_platform_credentials() == 0  # unchanged: nothing rewritten
    assert (await _row(database, PLATFORM_WORKSPACE, "openai")).wrapped_key == stamp

    clean_env.setenv("IONFLUX_OPENAI_API_KEY", OTHER_SECRET)
    assert await vault.load_platform_credentials() == 1
    assert (await vault.resolve("ws-a", "openai")).secrets["api_key"] == OTHER_SECRET
    info = (await vault.describe(PLATFORM_WORKSPACE, "openai"))
    assert info.source == "platform"


async def test_invalid_input_names_the_field(vault: Vault) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"provider": "Bad Name!", "secrets": {"api_key": SECRET}}, "provider"),
        ({"provider": "openai", "secrets": {}}, "secrets"),
        ({"provider": "openai", "secrets": {"api_key": ""}}, "secrets.api_key"),
        ({"provider": "openai", "secrets": {"api_key": SECRET}, "name": "../x"}, "name"),
        ({"provider": "openai", "secrets": {"api_key": SECRET}, "meta": {"_vault": {}}}, "meta"),
    ]
    for kwargs, field in cases:
        provider, secrets = kwargs.pop("provider"), kwargs.pop("secrets")
        with pytest.raises(InvalidRequest) as caught:
            await vault.put("ws-a", provider, secrets, **kwargs)
        assert caught.value.field == field
        assert SECRET not in caught.value.message


async def test_no_secret_in_reprs_or_logs(vault: Vault, database: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    bundle = await vault.get("ws-a", "openai")
    resolved = await vault.resolve("ws-a", "openai")
    shown = [repr(bundle), str(bundle), f"{bundle}", repr(resolved), repr(await vault.describe("ws-a", "openai"))]
    assert repr(bundle) == "SecretBundle(fields=['api_key'])"
    await _set(database, (await _row(database, "ws-a", "openai")).id, nonce=b"\x00" * 12)
    with pytest.raises(VaultError) as caught:
        await vault.get("ws-a", "openai")
    shown += [str(caught.value), repr(caught.value), str(caught.value.to_dict())]
    shown += [r.getMessage() + repr(r.__dict__) for r in caplog.records]
    assert caplog.records  # the vault did log: the check below looked at something
    for text in shown:
        assert SECRET not in text
    assert SecretBundle({"a": SECRET}) == SecretBundle({"a": SECRET})
