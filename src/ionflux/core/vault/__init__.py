"""Credential vault: AES-256-GCM envelope encryption, bound to (workspace, provider, name)."""

from ionflux.core.vault.bundle import CredentialInfo, ResolvedCredential, SecretBundle
from ionflux.core.vault.keys import Keyring, MasterKeyUnavailable
from ionflux.core.vault.vault import PLATFORM_CATALOGUE, Vault

__all__ = [
    "PLATFORM_CATALOGUE",
    "CredentialInfo",
    "Keyring",
    "MasterKeyUnavailable",
    "ResolvedCredential",
    "SecretBundle",
    "Vault",
]
