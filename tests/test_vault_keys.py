"""Master-key sources: the key file (mode 0600, refused when open), IONFLUX_MASTER_KEY, and AWS KMS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.errors import VaultError
from ionflux.core.models import Credential
from ionflux.core.settings import Settings
from ionflux.core.vault import MasterKeyUnavailable, Vault
from ionflux.core.vault.keys import FileKeyring

SECRET = "sk-live-9f8e7d6c5b4a39281706abcd"


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url="sqlite+aiosqlite:///unused.db", **values)


def _b64key(seed: bytes) -> str:
    return base64.b64encode(hashlib.sha256(seed).digest()).decode()


async def _master_key_ids(db: Database) -> set[str]:
    async with db.system() as s:
        return set(await s.scalars(select(Credential.master_key_id)))


def test_key_file_is_created_private_even_under_an_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "master.key"
    old = os.umask(0)
    try:
        FileKeyring(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_bytes())
    [entry] = document["keys"]
    assert document["current"] == entry["id"] and entry["id"].startswith("file:")
    assert len(base64.b64decode(entry["key"])) == 32 and entry["created_at"]
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    FileKeyring(path)
    key = json.loads(path.read_bytes())["keys"][0]["key"]
    path.chmod(mode)
    with pytest.raises(MasterKeyUnavailable) as caught:
        Vault.from_settings(_settings(tmp_path, master_key_file=path), Database("sqlite+aiosqlite://"))
    message = str(caught.value)
    assert "\n" not in message and f"chmod 600 {path}" in message and f"{mode:04o}" in message
    assert key not in message


def test_corrupt_key_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"keys": [{"id": "k1", "key": "c2VjcmV0LWtleS1tYXRlcmlhbA=="}')  # truncated JSON
    os.close(fd)
    with pytest.raises(MasterKeyUnavailable) as caught:
        FileKeyring(path)
    assert "c2VjcmV0" not in str(caught.value) and "not a valid keyring" in str(caught.value)


async def test_env_source_round_trip_and_key_id(database: Database, tmp_path: Path) -> None:
    key = _b64key(b"one")
    vault = Vault.from_settings(_settings(tmp_path, master_key_source="env", master_key=key), database)
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    assert (await vault.get("ws-a", "openai"))["api_key"] == SECRET
    expected_id = "env:" + hashlib.sha256(base64.b64decode(key)).hexdigest()[:8]
    assert await _master_key_ids(database) == {expected_id}
    assert not (tmp_path / "data" / "master.key").exists()  # no key file with the env source


async def test_env_source_rotates_in_two_steps(database: Database, tmp_path: Path) -> None:
    old, new = _b64key(b"old"), _b64key(b"new")
    before = Vault.from_settings(_settings(tmp_path, master_key_source="env", master_key=old), database)
    for i in range(5):
        await before.put(f"ws-{i}", "openai", {"api_key": f"{SECRET}{i}"})
    # Step 1: the new key first, the old one still known; then re-wrap.
    both = Vault.from_settings(_settings(tmp_path, master_key_source="env", master_key=f"{new},{old}"), database)
    assert (await both.get("ws-0", "openai"))["api_key"] == f"{SECRET}0"
    assert await both.rotate() == 5
    # Step 2: the old key is gone from the environment, and everything still opens.
    after = Vault.from_settings(_settings(tmp_path, master_key_source="env", master_key=new), database)
    assert await _master_key_ids(database) == {await after.keyring.current_key_id()}
    for i in range(5):
        assert (await after.get(f"ws-{i}", "openai"))["api_key"] == f"{SECRET}{i}"
    with pytest.raises(VaultError):  # and the old key alone no longer opens them
        await before.get("ws-0", "openai")


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"too short").decode(), "a:" + _b64key(b"x") + ",a:"
                                   + _b64key(b"y")])
def test_env_source_refuses_a_bad_key_without_echoing_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(MasterKeyUnavailable) as caught:
        Vault.from_settings(_settings(tmp_path, master_key_source="env", master_key=value),
                            Database("sqlite+aiosqlite://"))
    assert "IONFLUX_MASTER_KEY" in str(caught.value)
    for part in value.split(","):
        assert part.split(":")[-1] not in str(caught.value)


def test_boto3_is_imported_only_for_the_kms_source(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from ionflux.core.db import Database\n"
        "from ionflux.core.settings import Settings\n"
        "from ionflux.core.vault import Vault\n"
        f"Vault.from_settings(Settings(data_dir={str(tmp_path)!r}), Database('sqlite+aiosqlite://'))\n"
        "assert 'boto3' not in sys.modules, 'boto3 was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env={**os.environ})


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        import boto3

        yield boto3.client("kms", region_name="us-east-1")


async def test_kms_source_round_trip_binding_and_rotation(database: Database, tmp_path: Path, kms: Any) -> None:
    first = kms.create_key(Description="ionflux test 1")["KeyMetadata"]
    kms.create_alias(AliasName="alias/ionflux", TargetKeyId=first["KeyId"])
    vault = Vault.from_settings(_settings(tmp_path, master_key_source="aws-kms", kms_key_id="alias/ionflux"),
                                database)
    await vault.put("ws-a", "openai", {"api_key": SECRET})
    await vault.put("ws-b", "openai", {"api_key": SECRET + "b"})
    assert (await vault.get("ws-a", "openai"))["api_key"] == SECRET
    assert await _master_key_ids(database) == {first["Arn"]}

    # The EncryptionContext binds the wrapped key to its row: a copy into ws-b does not open.
    async with database.system() as s:
        rows = {r.workspace_id: r for r in await s.scalars(select(Credential))}
        rows["ws-b"].ciphertext, rows["ws-b"].nonce = rows["ws-a"].ciphertext, rows["ws-a"].nonce
        rows["ws-b"].wrapped_key = rows["ws-a"].wrapped_key
    with pytest.raises(VaultError) as caught:
        await vault.get("ws-b", "openai")
    assert SECRET not in str(caught.value)

    # Point the alias at a new key and rotate: every row moves to it and still opens.
    second = kms.create_key(Description="ionflux test 2")["KeyMetadata"]
    kms.update_alias(AliasName="alias/ionflux", TargetKeyId=second["KeyId"])
    await vault.delete("ws-b", "openai")
    assert await vault.rotate() == 1
    assert await _master_key_ids(database) == {second["Arn"]}
    assert (await vault.get("ws-a", "openai"))["api_key"] == SECRET


async def test_kms_unreachable_key_is_a_clear_error(database: Database, tmp_path: Path, kms: Any) -> None:
    vault = Vault.from_settings(_settings(tmp_path, master_key_source="aws-kms", kms_key_id="alias/missing"),
                                database)
    with pytest.raises(MasterKeyUnavailable, match="KMS DescribeKey failed: NotFoundException"):
        await vault.put("ws-a", "openai", {"api_key": SECRET})
