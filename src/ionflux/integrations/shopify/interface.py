"""What other services may rely on from the Shopify service (`platform.services["shopify"]`).

Agents normally use the HTTP reads (`GET /v1/shopify/connections/{id}/orders|products|shop`) and the
events `platform.shopify.events.<resource>.<action>`; a service in the same process can also ask for a
usable Admin API token (refreshed first, single flight) to make a call of its own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class ShopifyIntegration(Protocol):
    async def access_token(self, workspace_id: str, connection_id: str) -> str:
        """A valid `X-Shopify-Access-Token` for the connection; ReauthorizationRequired if it cannot be had."""
        ...
