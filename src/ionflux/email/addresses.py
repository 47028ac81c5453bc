"""Email addresses: syntax checked by `email-validator` (no DNS look-up), normalised, and keyed for suppression.

A plain ASCII address (a dot-atom local part `email-validator` returns unchanged, `@`, an ASCII host name) is
valid exactly when its domain is: the domain's verdict is taken from `email-validator` once and remembered, so
a 10,000-recipient batch on a few domains runs the full validator a few times, not 10,000. Anything else
(quotes, display names, Unicode, IDNA, reserved mailbox names it lower-cases) goes through the validator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import ATEXT, CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH

from ionflux.core.errors import InvalidRequest

MAX_NAME = 256
_PLAIN = re.compile(rf"([{ATEXT}]+(?:\.[{ATEXT}]+)*)@([A-Za-z0-9.-]+)\Z")
_RESERVED_LOCAL = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # the validator lower-cases these local parts


@dataclass(frozen=True, slots=True)
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
    return Address(_normalised(raw.strip(), field), name or None)


def _normalised(raw: str, field: str) -> str:
    plain = _PLAIN.match(raw)
    if plain is not None and len(raw) <= EMAIL_MAX_LENGTH and plain[1].lower() not in _RESERVED_LOCAL:
        domain = _plain_domain(plain[2])
        if domain is not None:
            return f"{plain[1]}@{domain}"
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidRequest(f"{field}: {raw!r} is not a valid email address: {exc}", field=field) from None


@lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The normalised form of an ASCII domain `email-validator` accepts (and keeps ASCII), else None."""
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain if checked.domain == checked.ascii_domain else None


def parse_addresses(values: Any, field: str, *, limit: int) -> list[Address]:
    if values is None:
        return []
    if not isinstance(values, list):
        values = [values]
    if len(values) > limit:
        raise InvalidRequest(f"{field}: at most {limit} addresses", field=field)
    return [parse_address(v, f"{field}[{i}]") for i, v in enumerate(values)]
