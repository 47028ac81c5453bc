"""What differs between OAuth providers, as data: endpoints, parameter names, auth styles, PKCE, lifetimes.

Facts come from /work/shared/API_FACTS.md. Anything not stated there is marked UNVERIFIED with where it
was read, so an integration owner knows which lines to check against the provider before going live.
"""

# ruff: noqa: S105, S106  (field names such as token_url and token_auth hold endpoints and styles, not secrets)
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

# client_secret_post: id and secret in the body; client_secret_basic: HTTP Basic id:secret (RFC 6749
# 2.3.1); secret_key_basic: HTTP Basic "<secret>:" with no client id (Stripe's platform secret key).
TokenAuth = Literal["client_secret_post", "client_secret_basic", "secret_key_basic"]
BodyEncoding = Literal["form", "json"]


@dataclass(frozen=True)
class PkceMethod:
    """How the code challenge is derived from the verifier, and what `code_challenge_method` says."""

    encoding: Literal["base64url", "hex"]  # base64url = RFC 7636 S256; hex = TikTok desktop variant
    method_param: str = "S256"


PKCE_S256 = PkceMethod("base64url")
PKCE_HEX_S256 = PkceMethod("hex")


@dataclass(frozen=True)
class RevokeSpec:
    """A revocation call. Param values may use {token} {client_id} {client_secret} {external_id}."""

    url: str
    params: Mapping[str, str] = field(default_factory=lambda: {"token": "{token}"})
    token_kind: Literal["refresh_token", "access_token"] = "refresh_token"  # which token fills {token}
    auth: TokenAuth | None = "client_secret_post"
    encoding: BodyEncoding = "form"


@dataclass(frozen=True)
class ProviderSpec:
    key: str  # catalogue key, e.g. "tiktok_desktop"
    provider: str  # connection / vault provider name, e.g. "tiktok"
    authorize_url: str  # may hold {var} templates filled from url_vars, e.g. {shop}
    token_url: str
    revoke: RevokeSpec | None = None
    client_id_param: str = "client_id"
    scope_param: str = "scope"
    scope_separator: str = " "
    pkce: PkceMethod | None = None
    token_auth: TokenAuth = "client_secret_post"
    token_encoding: BodyEncoding = "form"
    send_redirect_uri_on_token: bool = True
    send_grant_type_on_code: bool = True  # Shopify's documented body is {client_id, client_secret, code}
    # Static authorize-URL parameters. Shopify's documented URL has no response_type, hence data.
    authorize_params: Mapping[str, str] = field(default_factory=lambda: {"response_type": "code"})
    token_params: Mapping[str, str | int] = field(default_factory=dict)  # static extras on code exchange
    url_vars: Mapping[str, str] = field(default_factory=dict)  # template var -> regex it must fully match
    external_id_field: str | None = None  # token-response field naming the account; or a url var
    refresh_expires_field: str | None = None  # token-response field with the refresh-token lifetime (s)
    app_credential: str = "default"  # vault name of the OAuth app's client id/secret
    client_id_field: str = "client_id"  # field names inside that vault credential
    client_secret_field: str = "client_secret"
    documented_access_ttl: int | None = None  # informational only: refresh is driven by expires_in
    rotates_refresh_token: bool = False  # informational: we always store the newest refresh token anyway

    def at(self, base_url: str) -> ProviderSpec:
        """The same provider with every endpoint moved onto `base_url` (a simulator), paths kept."""

        def move(url: str) -> str:
            base, parts = urlsplit(base_url), urlsplit(url)
            return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))

        revoke = replace(self.revoke, url=move(self.revoke.url)) if self.revoke else None
        return replace(self, authorize_url=move(self.authorize_url), token_url=move(self.token_url), revoke=revoke)


SHOP_RE = r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com"  # API_FACTS §1, anchored by fullmatch

CATALOGUE: dict[str, ProviderSpec] = {
    # The generic provider is the sandbox simulator (sandbox/oauth_provider.py): plain RFC 6749 + 7636.
    "generic": ProviderSpec(
        key="generic", provider="generic",
        authorize_url="https://oauth.generic.invalid/oauth/authorize",
        token_url="https://oauth.generic.invalid/oauth/token",
        revoke=RevokeSpec("https://oauth.generic.invalid/oauth/revoke",
                          params={"token": "{token}", "token_type_hint": "refresh_token"},
                          auth="client_secret_basic"),
        pkce=PKCE_S256, token_auth="client_secret_basic", external_id_field="account_id",
        rotates_refresh_token=True,
    ),
    # API_FACTS §1. Per-shop hosts; comma-separated scopes; JSON body {client_id, client_secret, code};
    # `expiring: 1` asks for an expiring offline token (1 h access + rotating refresh token). No revoke
    # endpoint is listed in API_FACTS, so revocation is local only. The callback HMAC check belongs to
    # the Shopify integration (it holds the secret rules); this toolkit checks `shop` against the state.
    "shopify": ProviderSpec(
        key="shopify", provider="shopify",
        authorize_url="https://{shop}/admin/oauth/authorize",
        token_url="https://{shop}/admin/oauth/access_token",
        scope_separator=",", token_encoding="json", send_redirect_uri_on_token=False,
        send_grant_type_on_code=False, authorize_params={}, token_params={"expiring": 1}, url_vars={"shop": SHOP_RE},
        external_id_field="shop",
        refresh_expires_field="refresh_token_expires_in", documented_access_ttl=3600,
        rotates_refresh_token=True,
    ),
    # API_FACTS §5 (web login kit): `client_key`, comma-separated scopes, form body, rotating refresh
    # tokens, 2 h / 180 d lifetimes (drive from expires_in / refresh_expires_in), `open_id` names the user.
    # Revoke: `POST /v2/oauth/revoke/` is in API_FACTS; its body fields below are UNVERIFIED.
    "tiktok": ProviderSpec(
        key="tiktok", provider="tiktok",
        authorize_url="https://www.tiktok.com/v2/auth/authorize/",
        token_url="https://open.tiktokapis.com/v2/oauth/token/",
        revoke=RevokeSpec("https://open.tiktokapis.com/v2/oauth/revoke/",
                          params={"token": "{token}"}, token_kind="access_token"),
        client_id_param="client_key", scope_separator=",", client_id_field="client_key",
        external_id_field="open_id", refresh_expires_field="refresh_expires_in",
        documented_access_ttl=2 * 3600, rotates_refresh_token=True,
    ),
    # API_FACTS §5: desktop needs PKCE, and TikTok's desktop flow uses hex(SHA256(verifier)) while still
    # saying S256 (UNVERIFIED in official docs, "test both"). Same provider, so same connections/vault.
    "tiktok_desktop": ProviderSpec(
        key="tiktok_desktop", provider="tiktok",
        authorize_url="https://www.tiktok.com/v2/auth/authorize/",
        token_url="https://open.tiktokapis.com/v2/oauth/token/",
        revoke=RevokeSpec("https://open.tiktokapis.com/v2/oauth/revoke/",
                          params={"token": "{token}"}, token_kind="access_token"),
        client_id_param="client_key", scope_separator=",", client_id_field="client_key",
        pkce=PKCE_HEX_S256, external_id_field="open_id", refresh_expires_field="refresh_expires_in",
        documented_access_ttl=2 * 3600, rotates_refresh_token=True,
    ),
    # API_FACTS §6 (Connect OAuth): scope read_write|read_only, token call authenticated with the platform
    # secret key (sending it as HTTP Basic "sk_…:" is UNVERIFIED), access token does not expire,
    # `stripe_user_id` names the account, deauthorize with {client_id, stripe_user_id}.
    "stripe": ProviderSpec(
        key="stripe", provider="stripe",
        authorize_url="https://connect.stripe.com/oauth/authorize",
        token_url="https://connect.stripe.com/oauth/token",
        revoke=RevokeSpec("https://connect.stripe.com/oauth/deauthorize",
                          params={"client_id": "{client_id}", "stripe_user_id": "{external_id}"},
                          auth="secret_key_basic"),
        token_auth="secret_key_basic", send_redirect_uri_on_token=False,
        client_secret_field="secret_key", external_id_field="stripe_user_id",
    ),
    # Notion: not in API_FACTS (§7 covers only the pages API). UNVERIFIED, read from developers.notion.com
    # "create a token" / "authorization": authorize at api.notion.com/v1/oauth/authorize with owner=user,
    # token at /v1/oauth/token with HTTP Basic and a JSON body; `workspace_id`/`bot_id` in the response.
    # A revoke endpoint exists in the SDK (`oauth.revoke`); its path /v1/oauth/revoke is UNVERIFIED.
    "notion": ProviderSpec(
        key="notion", provider="notion",
        authorize_url="https://api.notion.com/v1/oauth/authorize",
        token_url="https://api.notion.com/v1/oauth/token",
        revoke=RevokeSpec("https://api.notion.com/v1/oauth/revoke", params={"token": "{token}"},
                          token_kind="access_token", auth="client_secret_basic", encoding="json"),
        token_auth="client_secret_basic", token_encoding="json",
        authorize_params={"response_type": "code", "owner": "user"}, external_id_field="bot_id",
    ),
    # Jira (Atlassian 3LO): API_FACTS §7 gives only the api.atlassian.com/ex/jira/{cloudId} API base.
    # UNVERIFIED, read from developer.atlassian.com "OAuth 2.0 (3LO) apps" / "refresh tokens":
    # auth.atlassian.com authorize with audience=api.atlassian.com & prompt=consent, space-separated
    # scopes, `offline_access` for a refresh token, JSON token body, rotating refresh tokens, ~1 h access.
    # The account (cloudId) needs a later accessible-resources call, so external_id is set by the
    # integration (the connection id stands in until then).
    "jira": ProviderSpec(
        key="jira", provider="jira",
        authorize_url="https://auth.atlassian.com/authorize",
        token_url="https://auth.atlassian.com/oauth/token",
        token_encoding="json",
        authorize_params={"response_type": "code", "audience": "api.atlassian.com", "prompt": "consent"},
        documented_access_ttl=3600, rotates_refresh_token=True,
    ),
    # Calendly: API_FACTS §7 covers only scheduling links. UNVERIFIED, read from developer.calendly.com:
    # auth.calendly.com/oauth/{authorize,token,revoke}; token with HTTP Basic (web clients), form body;
    # PKCE S256 recommended for all apps; access 2 h; single-use rotating refresh tokens; `owner` (a URI)
    # names the user in the token response.
    "calendly": ProviderSpec(
        key="calendly", provider="calendly",
        authorize_url="https://auth.calendly.com/oauth/authorize",
        token_url="https://auth.calendly.com/oauth/token",
        revoke=RevokeSpec("https://auth.calendly.com/oauth/revoke", params={"token": "{token}"}),
        pkce=PKCE_S256, token_auth="client_secret_basic", external_id_field="owner",
        documented_access_ttl=2 * 3600, rotates_refresh_token=True,
    ),
}
