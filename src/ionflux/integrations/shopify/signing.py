"""Shopify's OAuth request checks (API_FACTS §1): the shop domain and the query-string HMAC.

Hand-written because the rules are a screenful and the official Python SDK (`ShopifyAPI`) is a
synchronous ActiveResource client we would pull in for one function; the test suite cross-checks
`query_hmac` against that SDK's `Session.calculate_hmac`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from ionflux.core.errors import AuthFailed, InvalidRequest

# The official security check, anchored at both ends (fullmatch); lower-cased before use.
SHOP_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com")
_EXCLUDED = frozenset({"hmac", "signature"})


def validate_shop(value: str | None, field: str = "shop") -> str:
    """The shop's myshopify domain, lower-cased; a 400 that says why otherwise."""
    if not value:
        raise InvalidRequest("the shop parameter is required (e.g. my-store.myshopify.com)", field=field)
    shop = value.strip()
    if len(shop) > 255 or not SHOP_RE.fullmatch(shop):
        raise InvalidRequest(
            "shop must be a myshopify.com domain: a letter or digit, then letters, digits or '-', then "
            "'.myshopify.com' (no scheme, path, port or other host)", field=field)
    return shop.lower()


def _encode(text: str) -> str:
    # application/x-www-form-urlencoded as URLSearchParams writes it, with spaces as %20 (API_FACTS §1).
    return quote(text, safe="*-._").replace("~", "%7E")


def signable_message(params: Iterable[tuple[str, str]]) -> str:
    """Sorted `k=v` pairs joined by '&', without hmac/signature; a repeated key's values joined by ','."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key in _EXCLUDED:
            continue
        grouped.setdefault(key, []).append(value)
    return "&".join(f"{_encode(k)}={_encode(','.join(v))}" for k, v in sorted(grouped.items()))


def query_hmac(params: Iterable[tuple[str, str]], secret: str) -> str:
    """Lower-case hex HMAC-SHA256 of the signable message, keyed with the app's client secret."""
    return hmac.new(secret.encode(), signable_message(params).encode(), hashlib.sha256).hexdigest()


def verify_query(params: Sequence[tuple[str, str]], secrets: Iterable[str], *, now: float,
                 max_age: float) -> Mapping[str, str]:
    """Check a callback's HMAC (any of `secrets`, for a rotation) and its timestamp; return the params.

    A 401 for a missing or wrong HMAC, or a timestamp more than `max_age` seconds off.
    """
    given = [v for k, v in params if k == "hmac"]
    if len(given) != 1 or not re.fullmatch(r"[0-9a-fA-F]{64}", given[0]):
        raise AuthFailed("the callback's hmac parameter is missing or malformed")
    expected = given[0].lower().encode()
    if not any(hmac.compare_digest(query_hmac(params, s).encode(), expected) for s in secrets if s):
        raise AuthFailed("the callback's hmac does not match its parameters (forged or altered)")
    flat = dict(params)
    stamp = flat.get("timestamp", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > max_age:
        raise AuthFailed(f"the callback's timestamp is missing or more than {int(max_age)} s off (replayed?)")
    return flat
