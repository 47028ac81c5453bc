"""PKCE (RFC 7636): verifiers and code challenges, S256 and TikTok's hex variant."""

from __future__ import annotations

import base64
import hashlib
import secrets

from ionflux.core.oauth.catalogue import PkceMethod

# RFC 7636 §4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~]; 32 random bytes give 43 base64url chars.
VERIFIER_BYTES = 48  # 64 characters


def new_verifier() -> str:
    return secrets.token_urlsafe(VERIFIER_BYTES)


def challenge(verifier: str, method: PkceMethod) -> str:
    """The code challenge for `verifier`: base64url(SHA256) without padding, or lowercase hex(SHA256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    if method.encoding == "hex":
        return digest.hex()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
