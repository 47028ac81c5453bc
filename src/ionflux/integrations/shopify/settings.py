"""Shopify integration settings: `IONFLUX_SHOPIFY_*` environment variables (or ionflux.toml)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ionflux.core.settings import ServiceSettings

# API_FACTS §1: versions are named YYYY-MM (quarterly), plus `unstable`.
API_VERSION_RE = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
DEFAULT_SCOPES = (
    "read_products", "read_product_listings", "read_orders", "read_customers", "read_inventory", "read_locales",
)


class ShopifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_SHOPIFY_", extra="ignore")

    # Where each shop's Admin API and OAuth endpoints live; `{shop}` is the myshopify domain. Tests and the
    # demo point it at the simulator, e.g. http://127.0.0.1:8081/shops/{shop}.
    base_url: str = "https://{shop}"
    api_version: str = "2026-07"
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES))
    # Public URL IONFLUX is reached at: the OAuth callback and the webhook address are built from it.
    public_url: str = "http://127.0.0.1:8080"
    # expiring: 1 h access token + rotating refresh token (required of public apps, API_FACTS §1);
    # non_expiring: custom and merchant-created apps only.
    token_mode: Literal["expiring", "non_expiring"] = "expiring"  # noqa: S105 (a mode name)
    callback_max_age_seconds: float = Field(default=90.0, gt=0)  # the SDK's timestamp policy
    page_size: int = Field(default=50, ge=1, le=250)
    line_items_per_order: int = Field(default=5, ge=1, le=250)
    reconcile_interval_seconds: float = Field(default=900.0, ge=0, description="0 turns the periodic pass off")
    reconcile_grace_seconds: float = Field(default=300.0, ge=0, description="webhooks get this long to arrive")
    graphql_timeout_seconds: float = Field(default=120.0, gt=0)
    # A sync run's owner renews this lease every page; a run whose owner died is resumed once it lapses.
    sync_lease_seconds: float = Field(default=120.0, gt=0)
    # The plan's limits as first assumed (Standard, API_FACTS §1); the server's own reports replace them.
    graphql_bucket: float = Field(default=2000.0, gt=0)
    graphql_restore_rate: float = Field(default=100.0, gt=0)
    rest_bucket: int = Field(default=40, gt=0)
    rest_leak_rate: float = Field(default=2.0, gt=0)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not API_VERSION_RE.match(value):
            raise ValueError("expected a Shopify API version YYYY-MM (01, 04, 07 or 10) or 'unstable'")
        return value

    @field_validator("base_url")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{shop}" not in value or not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s) URL template containing {shop}, e.g. https://{shop}")
        return value.rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + "/integrations/shopify/auth/callback"

    @property
    def webhook_uri(self) -> str:
        return self.public_url.rstrip("/") + "/webhooks/shopify"
