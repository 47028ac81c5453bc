"""The credential vault: envelope encryption of secret bundles, bound to their owner.

Each credential gets a fresh AES-256 data key that encrypts its JSON bundle with AES-256-GCM (random
96-bit nonce); the master keyring (`keys.py`) wraps the data key. Both the bundle and the wrapped key
carry (workspace_id, provider, name) as associated data, so a ciphertext copied to another row or
workspace fails to open. Secrets never appear in logs, reprs or exception messages; they are opened
only for the call that uses them (no plaintext cache).
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import CursorResult, Select, select, update
from sqlalchemy.exc import IntegrityError

from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest, NotFound, VaultError
from ionflux.core.models import PLATFORM_WORKSPACE, Credential, utcnow
from ionflux.core.settings import Settings
from ionflux.core.ttl_cache import TtlCache
from ionflux.core.vault.bundle import (
    VAULT_META,
    CredentialInfo,
    ResolvedCredential,
    SecretBundle,
    check_owner,
    check_secrets,
    hint,
    info_of,
    user_meta,
)
from ionflux.core.vault.keys import NONCE_BYTES, Keyring, keyring_from_settings

log = logging.getLogger("ionflux.vault")

_DATA_LABEL = b"ionflux.credential.v1\x00"

# Platform-managed secrets read from IONFLUX_<PROVIDER>_<FIELD> at start (DESIGN: Configuration).
PLATFORM_CATALOGUE: dict[str, tuple[str, ...]] = {
    "openai": ("api_key",),
    "anthropic": ("api_key",),
    "deepseek": ("api_key",),
    "sendgrid": ("api_key", "webhook_public_key"),
    "ses": ("access_key_id", "secret_access_key"),
    "shopify": ("client_id", "client_secret", "client_secret_previous"),
    "whatsapp": ("app_secret", "verify_token", "access_token"),
    "stripe": ("secret_key", "webhook_secret"),
    "tiktok": ("client_key", "client_secret"),
    "notion": ("api_key", "client_id", "client_secret"),
    "jira": ("api_key", "client_id", "client_secret"),
    "calendly": ("api_key", "client_id", "client_secret"),
    "pinecone": ("api_key",),
    "qdrant": ("api_key",),
}


@dataclass(frozen=True)
class _Sealed:
    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes
    master_key_id: str


class Vault:
    def __init__(
        self, db: Database, keyring: Keyring, *, rotate_batch_size: int = 100, cache_seconds: float = 0.0
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.rotate_batch_size = rotate_batch_size
        # resolve() is on every provider call's path: keep the *encrypted* rows for a few seconds (they
        # are still decrypted per call). A change made in this process clears it at once; one made by
        # another process is seen within cache_seconds.
        self.cache_seconds = cache_seconds
        self._rows: TtlCache[tuple[str, str, str], list[Credential]] = TtlCache(cache_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> Vault:
        return cls(db, keyring_from_settings(settings), cache_seconds=settings.credential_cache_seconds)

    def forget_cached(self) -> None:
        """Drop cached credential rows (after a change, or when a caller changed rows directly)."""
        self._rows.forget()

    async def put(
        self, workspace_id: str, provider: str, secrets: Mapping[str, str], *,
        name: str = "default", meta: dict[str, Any] | None = None, origin: str = "api",
    ) -> CredentialInfo:
        """Store (or replace) a credential. `meta` is kept in clear: never put a secret in it."""
        check_owner(provider, name)
        check_secrets(secrets)
        if meta is not None and VAULT_META in meta:
            raise InvalidRequest(f"meta: the key {VAULT_META!r} is reserved", field="meta")
        fields = sorted(secrets)
        hints = {f: hint(secrets[f]) for f in fields}
        primary = max(fields, key=lambda f: (len(secrets[f]), f))
        bookkeeping = {"fields": fields, "hints": hints, "origin": origin}
        sealed = await self._seal(workspace_id, provider, name, secrets)
        for attempt in (1, 2):
            try:
                async with self.db.tenant(workspace_id) as session:
                    row = await session.scalar(_owned(provider, name))
                    if row is None:
                        row = Credential(workspace_id=workspace_id, provider=provider, name=name)
                        session.add(row)
                        kept = meta or {}
                    else:
                        kept = meta if meta is not None else user_meta(row.meta)
                        row.updated_at = utcnow()
                    row.ciphertext, row.nonce = sealed.ciphertext, sealed.nonce
                    row.wrapped_key, row.master_key_id = sealed.wrapped_key, sealed.master_key_id
                    row.hint = hints[primary]
                    row.meta = {**kept, VAULT_META: bookkeeping}
                    await session.flush()
                    info = info_of(row)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
                # A concurrent put created the row first: go round again and update it.
        self.forget_cached()  # after the commit, so no resolve in between can re-cache the old row
        log.info("credential stored", extra={"workspace_id": workspace_id, "provider": provider,
                                             "credential": name, "fields": fields})
        return info

    async def get(self, workspace_id: str, provider: str, name: str = "default") -> SecretBundle:
        row = await self._row(workspace_id, provider, name)
        return await self._open(row)

    async def describe(self, workspace_id: str, provider: str, name: str = "default") -> CredentialInfo:
        return info_of(await self._row(workspace_id, provider, name))

    async def delete(self, workspace_id: str, provider: str, name: str = "default") -> None:
        check_owner(provider, name)
        async with self.db.tenant(workspace_id) as session:
            row = await session.scalar(_owned(provider, name))
            if row is None:
                raise _not_found(provider, name)
            await session.delete(row)
        self.forget_cached()
        log.info("credential deleted", extra={"workspace_id": workspace_id, "provider": provider,
                                              "credential": name})

    async def resolve(self, workspace_id: str, provider: str, name: str = "default") -> ResolvedCredential:
        """The workspace's own credential if it has one, else the platform-managed one.

        A workspace credential that fails to open raises VaultError; it never falls back silently.
        """
        check_owner(provider, name)
        rows = await self._candidates(workspace_id, provider, name)
        if not rows:
            raise NotFound(
                f"no {provider!r} credential named {name!r}: neither this workspace nor the platform has one",
                field="provider",
            )
        row = next((r for r in rows if r.workspace_id == workspace_id), rows[0])
        source: Literal["workspace", "platform"] = "platform" if row.workspace_id == PLATFORM_WORKSPACE else "workspace"
        return ResolvedCredential(source, provider, name, await self._open(row))

    async def _candidates(self, workspace_id: str, provider: str, name: str) -> list[Credential]:
        return await self._rows.get((workspace_id, provider, name),
                                    lambda: self._load_candidates(workspace_id, provider, name))

    async def _load_candidates(self, workspace_id: str, provider: str, name: str) -> list[Credential]:
        async with self.db.system() as session:
            return list((await session.scalars(
                select(Credential).where(Credential.workspace_id.in_([workspace_id, PLATFORM_WORKSPACE]),
                                         Credential.provider == provider, Credential.name == name)
            )).all())

    async def load_platform_credentials(
        self, settings: Settings | None = None, environ: Mapping[str, str] | None = None
    ) -> int:
        """Upsert platform credentials from IONFLUX_<PROVIDER>_<FIELD>; unchanged ones are left alone.

        A provider whose variables are gone keeps its stored credential: an admin shell started
        without the secrets must not wipe them. Returns how many credentials were written.
        """
        env = os.environ if environ is None else environ
        written = 0
        for provider, field_names in PLATFORM_CATALOGUE.items():
            prefix = f"IONFLUX_{provider.upper()}_"
            found = {f: env[prefix + f.upper()] for f in field_names if env.get(prefix + f.upper())}
            if not found:
                continue
            try:
                if dict(await self.get(PLATFORM_WORKSPACE, provider)) == found:
                    continue
            except NotFound:
                pass
            except VaultError:
                log.warning("platform credential does not open; replacing it from the environment",
                            extra={"provider": provider})
            await self.put(PLATFORM_WORKSPACE, provider, found, origin="env")
            written += 1
        return written

    async def rotate(self) -> int:
        """Make a new master key current and re-wrap every data key under it; returns the count.

        Only wrapped_key and master_key_id change (ciphertexts and updated_at stay). Rows are read
        in batches, re-wrapped outside any transaction (KMS calls are slow), and written one batch
        per transaction, compare-and-set on the old wrapped key so a concurrent put is never undone.
        Old keys stay in the keyring: a server that read a row before rotation can still open it.
        """
        current = await self.keyring.rotate()
        self.forget_cached()
        rewrapped, failed, after = 0, 0, ""
        while True:
            async with self.db.system() as session:
                batch = (await session.execute(
                    select(Credential.id, Credential.workspace_id, Credential.provider, Credential.name,
                           Credential.wrapped_key, Credential.master_key_id)
                    .where(Credential.id > after).order_by(Credential.id).limit(self.rotate_batch_size)
                )).all()
            if not batch:
                break
            after = batch[-1].id
            changes: builtins.list[tuple[str, bytes, bytes, str]] = []
            for row in batch:
                if row.master_key_id == current:
                    continue
                context = _context(row.workspace_id, row.provider, row.name)
                try:
                    data_key = await self.keyring.unwrap(row.wrapped_key, row.master_key_id, context)
                    wrapped = await self.keyring.wrap(data_key, context)
                except VaultError:
                    failed += 1
                    log.error("credential could not be re-wrapped", extra={"credential_id": row.id})
                    continue
                changes.append((row.id, row.wrapped_key, wrapped.blob, wrapped.key_id))
            if changes:
                async with self.db.system() as session:
                    for cred_id, old, new, key_id in changes:
                        result = cast(CursorResult[Any], await session.execute(
                            update(Credential)
                            .where(Credential.id == cred_id, Credential.wrapped_key == old)
                            .values(wrapped_key=new, master_key_id=key_id, updated_at=Credential.updated_at)
                            .execution_options(synchronize_session=False)
                        ))
                        rewrapped += result.rowcount
        log.info("master key rotated", extra={"master_key_id": current, "rewrapped": rewrapped})
        if failed:
            raise VaultError(f"{rewrapped} credentials re-wrapped, {failed} could not be unwrapped "
                             "(see the log for their ids); they still use their old master key")
        return rewrapped

    async def list(self, workspace_id: str) -> builtins.list[CredentialInfo]:
        async with self.db.tenant(workspace_id) as session:
            rows = (await session.scalars(
                select(Credential).order_by(Credential.provider, Credential.name)
            )).all()
        return [info_of(row) for row in rows]

    async def _row(self, workspace_id: str, provider: str, name: str) -> Credential:
        check_owner(provider, name)
        async with self.db.tenant(workspace_id) as session:
            row = await session.scalar(_owned(provider, name))
        if row is None:
            raise _not_found(provider, name)
        return row

    async def _seal(self, workspace_id: str, provider: str, name: str, secrets: Mapping[str, str]) -> _Sealed:
        context = _context(workspace_id, provider, name)
        data_key, wrapped = await self.keyring.new_data_key(context)
        nonce = os.urandom(NONCE_BYTES)
        plaintext = json.dumps(dict(secrets), sort_keys=True, separators=(",", ":")).encode()
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _data_aad(context))
        return _Sealed(ciphertext, nonce, wrapped.blob, wrapped.key_id)

    async def _open(self, row: Credential) -> SecretBundle:
        context = _context(row.workspace_id, row.provider, row.name)
        try:
            data_key = await self.keyring.unwrap(row.wrapped_key, row.master_key_id, context)
            plaintext = AESGCM(data_key).decrypt(row.nonce, row.ciphertext, _data_aad(context))
            values = orjson.loads(plaintext)  # parse errors are swallowed below: they quote the text
        except (VaultError, InvalidTag, ValueError):
            values = None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise VaultError(f"credential {row.provider}/{row.name} of workspace {row.workspace_id} does not "
                             "decrypt: tampered, moved from another row, or its master key is gone")
        return SecretBundle(values)


def _context(workspace_id: str, provider: str, name: str) -> dict[str, str]:
    return {"workspace_id": workspace_id, "provider": provider, "name": name}


def _data_aad(context: Mapping[str, str]) -> bytes:
    return _data_aad_of(tuple(sorted(context.items())))


@functools.lru_cache(maxsize=4096)
def _data_aad_of(context: tuple[tuple[str, str], ...]) -> bytes:
    # Kept (no secret in it): every provider call decrypts its credential, and this encoding cost more
    # than the decryption.
    return _DATA_LABEL + json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def _owned(provider: str, name: str) -> Select[Credential]:
    return select(Credential).where(Credential.provider == provider, Credential.name == name)


def _not_found(provider: str, name: str) -> NotFound:
    return NotFound(f"this workspace has no {provider!r} credential named {name!r}", field="provider")


