"""Master-key sources ("keyrings"): they wrap and unwrap the per-credential data keys.

One small interface, three sources (chosen by IONFLUX_MASTER_KEY_SOURCE):

- `file` (embedded default): a JSON keyring at `settings.effective_master_key_file`, created on first
  run with mode 0600: `{"version": 1, "current": id, "keys": [{"id", "key" (base64), "created_at"}]}`.
  `rotate()` appends a key and makes it current; old keys stay so rows not yet re-wrapped (or held by
  another server) still open. Servers notice a changed file (stat) and reload it: no restart.
- `env`: IONFLUX_MASTER_KEY is one base64 32-byte key (id "env:" + 8 hex of its SHA-256), or several
  comma-separated `[id:]base64` entries, the first one current. Rotation in two steps: prepend the new
  key (`NEW,OLD`) and restart, run `vault rotate`; then drop OLD from the variable.
- `aws-kms`: data keys come from KMS GenerateDataKey and are opened by Decrypt, with the credential's
  (workspace_id, provider, name) as EncryptionContext. KMS rotates its own key material; pointing
  IONFLUX_KMS_KEY_ID (or its alias) at a new key and running `vault rotate` moves every row to it.

Local keyrings wrap with AES-256-GCM (blob = 12-byte nonce || ciphertext+tag), not AES-KW: RFC 3394
has no associated data, and the wrapped key must be bound to its row (and key id) like the secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import os
import secrets
import stat
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ionflux.core.errors import VaultError

if TYPE_CHECKING:
    from ionflux.core.settings import Settings

KEY_BYTES = 32
NONCE_BYTES = 12
_WRAP_LABEL = b"ionflux.data-key.v1\x00"


class MasterKeyUnavailable(VaultError):
    """The master key cannot be loaded or used (missing, malformed, unsafe file mode, KMS down)."""


@dataclass(frozen=True)
class WrappedKey:
    key_id: str
    blob: bytes


class Keyring(ABC):
    """Wraps data keys under the current master key; unwraps under any key it still holds."""

    @abstractmethod
    async def current_key_id(self) -> str: ...

    @abstractmethod
    async def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey: ...

    @abstractmethod
    async def unwrap(self, blob: bytes, key_id: str, context: Mapping[str, str]) -> bytes: ...

    @abstractmethod
    async def rotate(self) -> str:
        """Make a new master key current if this source can create one; return the current key id."""

    async def new_data_key(self, context: Mapping[str, str]) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, await self.wrap(data_key, context)


def _wrap_aad(key_id: str, context: Mapping[str, str]) -> bytes:
    return _wrap_aad_of(key_id, tuple(sorted(context.items())))


@functools.lru_cache(maxsize=4096)
def _wrap_aad_of(key_id: str, context: tuple[tuple[str, str], ...]) -> bytes:
    # Canonical JSON: the same context always gives the same bytes; the key id is bound in as well. Kept
    # (it is no secret): the encoding cost more than the unwrap itself on every provider call.
    return _WRAP_LABEL + json.dumps({**dict(context), "key_id": key_id}, sort_keys=True,
                                    separators=(",", ":")).encode()


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class LocalKeyring(Keyring):
    """Master keys held in memory; AES-256-GCM key wrap."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        self._keys = dict(keys)
        self._current = current
        self._ciphers: dict[str, tuple[bytes, AESGCM]] = {}  # a master key's cipher, built once per key object

    async def current_key_id(self) -> str:
        return self._current

    async def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        key_id = self._current
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + AESGCM(self._keys[key_id]).encrypt(nonce, data_key, _wrap_aad(key_id, context))
        return WrappedKey(key_id, blob)

    async def unwrap(self, blob: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        master = self._lookup(key_id)
        known = self._ciphers.get(key_id)
        if known is None or known[0] is not master:  # a reloaded keyring has new key objects: rebuild
            known = self._ciphers[key_id] = (master, AESGCM(master))
        try:
            return known[1].decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _wrap_aad(key_id, context))
        except (InvalidTag, ValueError):
            raise VaultError("data key does not unwrap: tampered, moved to another row, or wrong key") from None

    def _lookup(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise VaultError(f"master key {key_id!r} is not in the keyring") from None

    async def rotate(self) -> str:
        return self._current


class EnvKeyring(LocalKeyring):
    """Keys from IONFLUX_MASTER_KEY: `base64` or `[id:]base64,[id:]base64,...`, the first current.

    Without an explicit id a key's id is "env:" + 8 hex of its SHA-256, so `NEW,OLD` needs no naming;
    an explicit id must then stay the same for as long as rows use that key.
    """

    @classmethod
    def parse(cls, value: str) -> EnvKeyring:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for position, entry in enumerate((e.strip() for e in value.split(",")), start=1):
            if not entry:
                continue
            given_id, _, encoded = entry.rpartition(":")
            key = _decode_key(encoded)
            if key is None:
                raise MasterKeyUnavailable(
                    f"IONFLUX_MASTER_KEY: entry {position} is not base64 of {KEY_BYTES} bytes "
                    "(make one with: python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')"
                )
            key_id = given_id or f"env:{fingerprint(key)}"
            if key_id in keys:
                raise MasterKeyUnavailable(f"IONFLUX_MASTER_KEY: key id {key_id!r} appears twice")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise MasterKeyUnavailable("IONFLUX_MASTER_KEY: empty; expected base64 of 32 bytes")
        return cls(keys, order[0])


def _decode_key(encoded: str) -> bytes | None:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


class FileKeyring(LocalKeyring):
    """The embedded default: a JSON keyring file, mode 0600, created on first run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._created_at: dict[str, str] = {}
        super().__init__({}, "")
        self._load(create=True)

    def _load(self, *, create: bool = False) -> None:
        if create and not self.path.exists():
            self._create()
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise MasterKeyUnavailable(f"master key file {self.path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())  # checked on the opened file itself: no swap between check and read
            if info.st_mode & 0o077:
                raise MasterKeyUnavailable(
                    f"master key file {self.path} is open to group/others (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}); refusing to start: run chmod 600 {self.path}"
                )
            raw = fh.read()
        self._keys, self._current, self._created_at = _parse_keyring(raw, self.path)
        self._signature = (info.st_ino, info.st_mtime_ns, info.st_size)

    def _create(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        key_id = f"file:{fingerprint(key)}"
        # Written whole to a private temp file, then hard-linked into place: a racing server either
        # wins the link or reads a complete file, never a half-written one.
        tmp = self._write_temp({"version": 1, "current": key_id, "keys": [_entry(key_id, key)]})
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def _write_temp(self, document: dict[str, Any]) -> Path:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(document, indent=2).encode())
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def _refresh_if_changed(self) -> None:
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise MasterKeyUnavailable(f"master key file {self.path}: {exc.strerror}") from None
        if (info.st_ino, info.st_mtime_ns, info.st_size) != self._signature:
            self._load()

    async def current_key_id(self) -> str:
        self._refresh_if_changed()
        return self._current

    async def wrap(self, data_key: bytes, context: Mapping[str, str]) -> WrappedKey:
        self._refresh_if_changed()  # another process may have rotated: write under its new key
        return await super().wrap(data_key, context)

    def _lookup(self, key_id: str) -> bytes:
        if key_id not in self._keys:
            self._load()  # a key we have not seen: rotated by another process since we loaded
        return super()._lookup(key_id)

    async def rotate(self) -> str:
        return await asyncio.to_thread(self._rotate_locked)

    def _rotate_locked(self) -> str:
        import fcntl  # POSIX only; the file source is for single hosts

        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two rotations at once must not drop each other's key
            self._load()
            key = AESGCM.generate_key(bit_length=256)
            key_id = f"file:{fingerprint(key)}"
            while key_id in self._keys:
                key = AESGCM.generate_key(bit_length=256)
                key_id = f"file:{fingerprint(key)}"
            entries = [_entry(k, v, self._created_at.get(k)) for k, v in self._keys.items()]
            entries.append(_entry(key_id, key))
            tmp = self._write_temp({"version": 1, "current": key_id, "keys": entries})
            os.replace(tmp, self.path)
            self._load()
            return self._current
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _entry(key_id: str, key: bytes, created_at: str | None = None) -> dict[str, str]:
    return {
        "id": key_id,
        "key": base64.b64encode(key).decode(),
        "created_at": created_at or datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _parse_keyring(raw: bytes, path: Path) -> tuple[dict[str, bytes], str, dict[str, str]]:
    bad = f"master key file {path} is not a valid keyring"
    try:
        document = json.loads(raw)
        entries = document["keys"]
        keys: dict[str, bytes] = {}
        created: dict[str, str] = {}
        for entry in entries:
            key = _decode_key(entry["key"])
            if key is None or not isinstance(entry["id"], str):
                raise MasterKeyUnavailable(f"{bad}: key {entry.get('id')!r} is not base64 of 32 bytes")
            keys[entry["id"]] = key
            created[entry["id"]] = str(entry.get("created_at", ""))
        current = document.get("current") or entries[-1]["id"]
    except MasterKeyUnavailable:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise MasterKeyUnavailable(bad) from None  # never echo the file's content: it holds keys
    if current not in keys:
        raise MasterKeyUnavailable(f"{bad}: current key {current!r} is not among its keys")
    return keys, current, created


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keyring IONFLUX_MASTER_KEY_SOURCE names; boto3 is imported only for aws-kms."""
    if settings.master_key_source == "env":
        if settings.master_key is None:
            raise MasterKeyUnavailable("IONFLUX_MASTER_KEY: required when IONFLUX_MASTER_KEY_SOURCE=env")
        return EnvKeyring.parse(settings.master_key.get_secret_value())
    if settings.master_key_source == "aws-kms":
        if not settings.kms_key_id:
            raise MasterKeyUnavailable("IONFLUX_KMS_KEY_ID: required when IONFLUX_MASTER_KEY_SOURCE=aws-kms")
        from ionflux.core.vault.kms import KmsKeyring

        return KmsKeyring(settings.kms_key_id)
    return FileKeyring(settings.effective_master_key_file)
