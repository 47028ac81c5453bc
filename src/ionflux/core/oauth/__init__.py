"""OAuth 2.0 toolkit: authorization-code flow with PKCE, tokens in the vault, single-flight refresh."""

from ionflux.core.oauth.catalogue import CATALOGUE, PKCE_HEX_S256, PKCE_S256, PkceMethod, ProviderSpec, RevokeSpec
from ionflux.core.oauth.errors import (
    AuthorizationDenied,
    OAuthStateError,
    ReauthorizationRequired,
    TokenEndpointError,
)
from ionflux.core.oauth.flow import OAuthFlow
from ionflux.core.oauth.tokens import HttpReply, ProviderClientTransport, TokenTransport

__all__ = [
    "CATALOGUE",
    "PKCE_HEX_S256",
    "PKCE_S256",
    "AuthorizationDenied",
    "HttpReply",
    "OAuthFlow",
    "OAuthStateError",
    "PkceMethod",
    "ProviderClientTransport",
    "ProviderSpec",
    "ReauthorizationRequired",
    "RevokeSpec",
    "TokenEndpointError",
    "TokenTransport",
]
