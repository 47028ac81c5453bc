"""Installing the app on a shop: initiate (authorize URL), callback (HMAC, state, shop, code exchange),
then on connect: the shop's name/currency/timezone and the webhook subscriptions, via the Admin API.

Expiring offline tokens (`expiring: 1`, 1 h access + rotating refresh token) are the default, as Shopify
requires of public apps; `token_mode=non_expiring` is for custom and merchant-created apps.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest, IonfluxError, NotFound
from ionflux.core.models import PLATFORM_WORKSPACE, Connection
from ionflux.core.oauth import CATALOGUE, OAuthFlow, ProviderSpec
from ionflux.core.oauth.catalogue import SHOP_RE as CATALOGUE_SHOP_RE
from ionflux.core.oauth.models import OAuthState
from ionflux.core.oauth.state import state_hash
from ionflux.core.vault import Vault
from ionflux.integrations.shopify import queries
from ionflux.integrations.shopify.admin import ShopifyAdminClient
from ionflux.integrations.shopify.models import ShopifyShop
from ionflux.integrations.shopify.settings import ShopifySettings
from ionflux.integrations.shopify.signing import validate_shop, verify_query

log = logging.getLogger("ionflux.shopify")
BRAND_RE = r"(|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})"  # empty: no brand given


def provider_specs(settings: ShopifySettings) -> dict[str, ProviderSpec]:
    """The catalogue's Shopify entry on our base URL: `shopify` (expiring) and `shopify_custom` (not).
    `brand_id` rides along as a URL variable: kept with the state and the connection, used in no URL."""
    base = settings.base_url
    expiring = replace(CATALOGUE["shopify"], authorize_url=f"{base}/admin/oauth/authorize",
                       token_url=f"{base}/admin/oauth/access_token",
                       url_vars={"shop": CATALOGUE_SHOP_RE, "brand_id": BRAND_RE})
    return {"shopify": expiring, "shopify_custom": replace(expiring, key="shopify_custom", token_params={})}


class ShopifyConnector:
    def __init__(self, db: Database, vault: Vault, flow: OAuthFlow, admin: ShopifyAdminClient,
                 settings: ShopifySettings) -> None:
        self.db, self.vault, self.flow, self.admin, self.settings = db, vault, flow, admin, settings

    @property
    def flavor(self) -> str:
        return "shopify" if self.settings.token_mode == "expiring" else "shopify_custom"  # noqa: S105

    async def initiate(self, workspace_id: str, *, shop: str | None, brand_id: str | None,
                       user_id: str | None = None, scopes: Sequence[str] | None = None) -> str:
        shop = validate_shop(shop)
        if brand_id is not None and not re.fullmatch(BRAND_RE, brand_id):
            raise InvalidRequest("brand_id must be 1-64 letters, digits or _ . : - (starting with a letter or "
                                 "digit)", field="brand_id")
        existing = await self._connection_for(workspace_id, shop)
        url_vars = {"shop": shop}
        if brand_id or existing is None:  # a reconnection without one keeps the connection's brand
            url_vars["brand_id"] = brand_id or ""
        # An existing connection asks for the union of granted and configured scopes and keeps its id.
        return await self.flow.start(
            workspace_id, self.flavor, scopes=list(scopes or self.settings.scopes),
            redirect_uri=self.settings.redirect_uri, user_id=user_id,
            connection_id=existing.id if existing is not None else None, url_vars=url_vars)

    async def callback(self, params: Sequence[tuple[str, str]]) -> Connection:
        flat = dict(params)
        shop = validate_shop(flat.get("shop"))
        secrets = await self._app_secrets(await self._state_workspace(flat.get("state", "")))
        verify_query(params, secrets, now=time.time(), max_age=self.settings.callback_max_age_seconds)
        connection = await self.flow.complete("shopify", {**flat, "shop": shop})
        await self.on_connect(connection)
        return connection

    async def on_connect(self, connection: Connection) -> None:
        """Fetch the shop and register the webhook subscriptions; a failure is recorded, never fatal."""
        ws, shop = connection.workspace_id, connection.external_id
        info: dict[str, Any] = {}
        webhooks: dict[str, str] = {}
        problem: str | None = None
        try:
            token = await self.flow.access_token(ws, connection.id)
            shop_page = queries.Page(queries.SHOP, {}, queries.SHOP_COST)
            info = (await self.admin.graphql(shop, token, shop_page)).data["shop"]
            webhooks = await self.subscribe(shop, token)
        except IonfluxError as exc:
            problem = f"{exc.code}: {exc.message}"[:500]
            log.warning("shopify on-connect setup failed", extra={"connection_id": connection.id, "code": exc.code})
        async with self.db.tenant(ws) as session:
            row = await session.get(ShopifyShop, connection.id)
            if row is None:
                row = ShopifyShop(connection_id=connection.id, shop_domain=shop)
                session.add(row)
            if info:
                row.shop_gid, row.name = info.get("id"), info.get("name")
                row.currency, row.iana_timezone = info.get("currencyCode"), info.get("ianaTimezone")
            if webhooks:
                row.webhooks = webhooks
            conn = await session.get(Connection, connection.id)
            if conn is not None:
                conn.meta = {**(conn.meta or {}), "setup_error": problem}

    async def subscribe(self, shop: str, token: str) -> dict[str, str]:
        """Subscribe every topic we need to our webhook address, skipping those already there."""
        uri = self.settings.webhook_uri
        listed = await self.admin.graphql(shop, token, queries.Page(queries.SUBSCRIPTIONS, {},
                                                                     queries.SUBSCRIPTIONS_COST))
        have = {n["topic"]: n["id"] for n in listed.data["webhookSubscriptions"]["nodes"] if n.get("uri") == uri}
        made: dict[str, str] = {}
        for topic in queries.WEBHOOK_TOPICS:
            enum = queries.topic_enum(topic)
            if enum in have:
                made[topic] = have[enum]
                continue
            result = await self.admin.graphql(shop, token, queries.Page(queries.SUBSCRIBE, {
                "topic": enum, "subscription": {"uri": uri, "format": "JSON"}}, queries.MUTATION_COST))
            payload = result.data["webhookSubscriptionCreate"]
            if payload.get("userErrors"):
                raise NotFound(f"Shopify refused the {topic} subscription: {payload['userErrors'][0]['message']}",
                               field="webhooks")
            made[topic] = payload["webhookSubscription"]["id"]
        return made

    async def _connection_for(self, workspace_id: str, shop: str) -> Connection | None:
        async with self.db.tenant(workspace_id) as session:
            row: Connection | None = await session.scalar(select(Connection).where(
                Connection.provider == "shopify", Connection.external_id == shop))
        return row

    async def _state_workspace(self, state: str) -> str | None:
        """Whose authorization this callback claims to finish (read only; the flow consumes the state)."""
        if not state:
            return None
        async with self.db.system() as session:
            workspace: str | None = await session.scalar(select(OAuthState.workspace_id).where(
                OAuthState.state_hash == state_hash(state)))
        return workspace

    async def _app_secrets(self, workspace_id: str | None) -> list[str]:
        try:
            resolved = await self.vault.resolve(workspace_id or PLATFORM_WORKSPACE, "shopify")
        except NotFound:
            raise NotFound("no Shopify app credential is configured (IONFLUX_SHOPIFY_CLIENT_SECRET)",
                           field="provider") from None
        return [v for k in ("client_secret", "client_secret_previous") if (v := resolved.secrets.get(k))]
