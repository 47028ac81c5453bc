"""Email addresses: syntax checked by `email-validator` (no DNS look-up), normalised, and keyed for suppression."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from ionflux.core.errors import InvalidRequest

MAX_NAME = 256


@dataclass(frozen=True)
class Address:
    email: str  # normalised (domain lower-cased, IDNA-checked)
    name: str | None = None

    @property
    def key(self) -> str:
        """How suppressions and dedupe compare addresses: case-insensitive, as every mailbox provider does."""
        return self.email.lower()

    def to_dict(self) -> dict[str, Any]:
        return {"email": self.email, "name": self.name} if self.name else {"email": self.email}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Address:
        return cls(str(value["email"]), value.get("name"))


def parse_address(value: Any, field: str) -> Address:
    """`"a@x.com"` or `{"email": "a@x.com", "name": "A"}` → Address; otherwise a 400 naming the address."""
    name: str | None = None
    if isinstance(value, dict):
        raw, name = value.get("email"), value.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME or "\n" in name or "\r" in name):
            raise InvalidRequest(f"{field}.name must be a single-line string of at most {MAX_NAME} characters",
                                 field=f"{field}.name")
    else:
        raw = value
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest(f"{field}: an email address is required", field=field)
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidRequest(f"{field}: {raw!r} is not a valid email address: {exc}", field=field) from None
    return Address(checked.normalized, name or None)


def parse_addresses(values: Any, field: str, *, limit: int) -> list[Address]:
    if values is None:
        return []
    if not isinstance(values, list):
        values = [values]
    if len(values) > limit:
        raise InvalidRequest(f"{field}: at most {limit} addresses", field=field)
    return [parse_address(v, f"{field}[{i}]") for i, v in enumerate(values)]
