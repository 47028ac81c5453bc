"""What a credential is: a bundle of secret strings, the metadata that may be shown, the input rules."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ionflux.core.errors import InvalidRequest
from ionflux.core.models import PLATFORM_WORKSPACE, Credential

PROVIDER_RE = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
FIELD_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_FIELDS = 32
MAX_VALUE_CHARS = 16384
HINT_MIN_CHARS = 12  # shorter secrets get no hint: four characters of eight is too much of it
VAULT_META = "_vault"  # reserved key in Credential.meta: field names and hints, kept by the vault


class SecretBundle(Mapping[str, str]):
    """Secret strings by field name; `repr`/`str` show field names only, never values."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, field_name: str) -> str:
        return self._values[field_name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def reveal(self, field_name: str) -> str:
        return self._values[field_name]

    @property
    def fields(self) -> list[str]:
        return sorted(self._values)

    def __repr__(self) -> str:
        return f"SecretBundle(fields={self.fields!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown about a credential: never a secret, at most the last 4 characters of one."""

    provider: str
    name: str
    fields: list[str]
    hints: dict[str, str]
    hint: str
    source: Literal["workspace", "platform"]
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ResolvedCredential:
    source: Literal["workspace", "platform"]
    provider: str
    name: str
    secrets: SecretBundle


def check_owner(provider: str, name: str) -> None:
    if not isinstance(provider, str) or not PROVIDER_RE.fullmatch(provider):
        raise InvalidRequest(f"provider must be 2-64 characters: a lowercase letter, then lowercase letters, "
                             f"digits, '_' or '-' (got {str(provider)[:70]!r})", field="provider")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidRequest(f"name must be 1-64 characters of lowercase letters, digits, '_', '.' or '-' "
                             f"(got {str(name)[:70]!r})", field="name")


def check_secrets(secrets: Mapping[str, str]) -> None:
    if not isinstance(secrets, Mapping) or not secrets:
        raise InvalidRequest("secrets must be a non-empty object of field name to secret string",
                             field="secrets")
    if len(secrets) > MAX_FIELDS:
        raise InvalidRequest(f"secrets: at most {MAX_FIELDS} fields", field="secrets")
    for key, value in secrets.items():
        if not isinstance(key, str) or not FIELD_RE.fullmatch(key):
            raise InvalidRequest(f"secrets: field names are lowercase letters, digits and '_' (got {str(key)[:70]!r})",
                                 field="secrets")
        # Messages name the field, never the value.
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"secrets.{key} must be a non-empty string", field=f"secrets.{key}")
        if len(value) > MAX_VALUE_CHARS:
            raise InvalidRequest(f"secrets.{key} is longer than {MAX_VALUE_CHARS} characters",
                                 field=f"secrets.{key}")


def hint(value: str) -> str:
    return "…" + value[-4:] if len(value) >= HINT_MIN_CHARS else "…"


def user_meta(stored: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (stored or {}).items() if k != VAULT_META}


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands timestamps back naive; they were written in UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def info_of(row: Credential) -> CredentialInfo:
    book = (row.meta or {}).get(VAULT_META, {})
    return CredentialInfo(
        provider=row.provider, name=row.name, fields=list(book.get("fields", [])),
        hints=dict(book.get("hints", {})), hint=row.hint,
        source="platform" if row.workspace_id == PLATFORM_WORKSPACE else "workspace",
        meta=user_meta(row.meta), created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
    )
