"""Address checking: the remembered-domain shortcut answers exactly as `email-validator` does."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from ionflux.core.errors import InvalidRequest
from ionflux.email.addresses import parse_address

SAMPLES = [
    "user@example.com", "User.Name+tag@Example.COM", "a@b.co", "x@sub.domain.example.org", "o'brien@example.ie",
    "{weird}|~@example.com", "POSTMASTER@example.com", "Info@example.com", "abuse@EXAMPLE.com",
    "user@xn--bcher-kva.example", "user@xn--zz-ab.example", "user@localhost", "user@example", "user@host.local",
    "user@1.2.3.4", "user@example.123", "user@-example.com", "user@example-.com", "user@exa_mple.com",
    "user@ab--cd.example.com", "user@example..com", "user@.example.com", "user@example.com.", ".user@example.com",
    "user.@example.com", "us..er@example.com", "user@@example.com", "user@[127.0.0.1]", '"quoted"@example.com',
    "Name <user@example.com>", "üser@example.com", "user@exämple.com", "user@invalid", "user@x.invalid",
    "user@x.onion", "user@" + "a" * 63 + ".com", "user@" + "a" * 64 + ".com",
    "u" * 240 + "@example.com", "u" * 241 + "@example.com", "u" * 250 + "@ex.com",
    "user@" + ".".join(["abcdefghi"] * 25) + ".com", "user@example.com\n", "user name@example.com",
]


def _expected(raw: str) -> str | None:
    try:  # parse_address has always trimmed surrounding white space first
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def _ours(raw: str) -> str | None:
    try:
        return parse_address(raw, "to").email
    except InvalidRequest:
        return None


@pytest.mark.parametrize("raw", SAMPLES)
def test_same_verdict_and_normal_form_as_email_validator(raw: str) -> None:
    assert _ours(raw) == _expected(raw)
    assert _ours(raw) == _expected(raw)  # the second time from the remembered domain


def test_random_addresses_agree_with_email_validator() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019.-_+!#'@~"
    domains = ["example.com", "EXAMPLE.com", "a-b.example.org", "x.test", "mail.local", "b--c.com", "y.arpa", "q.io"]
    for _ in range(3000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        raw = f"{local}@{rng.choice(domains)}" if rng.random() < 0.8 else local
        assert _ours(raw) == _expected(raw), raw


def test_invalid_address_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_address("user@example..com", "recipients[3].to")
    assert caught.value.field == "recipients[3].to" and "user@example..com" in caught.value.message
