"""In-process calls to the HTTP API of the services this process runs, acting as one workspace.

Where a service publishes a capability only as HTTP (LLM text generation, Shopify reads), in-process
agents call that same contract through an ASGI app that exists only in memory (never served): the
services' own routers, authentication and error mapping. It authenticates like any caller, with a
workspace API token the bridge issues once per workspace and keeps encrypted in the vault (provider
`ionflux-agents`, name `loopback`); agents get ports, never the token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

from ionflux.client.http import IonfluxClient
from ionflux.core.error_handlers import install_error_handlers
from ionflux.core.errors import NotFound

if TYPE_CHECKING:
    from ionflux.core.platform import Platform

VAULT_PROVIDER, VAULT_NAME = "ionflux-agents", "loopback"


class _WorkspaceToken(httpx.Auth):
    def __init__(self, loopback: Loopback, workspace_id: str) -> None:
        self.loopback, self.workspace_id = loopback, workspace_id

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.loopback.token(self.workspace_id)}"
        yield request


class Loopback:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._transport: httpx.ASGITransport | None = None
        self._clients: dict[str, IonfluxClient] = {}
        self._tokens: dict[str, str] = {}
        self._minting: dict[str, asyncio.Lock] = {}

    def _app(self) -> httpx.ASGITransport:
        if self._transport is None:  # built on first use: every service of the process exists by then
            app = FastAPI()
            app.state.platform = self.platform
            install_error_handlers(app)
            for name, service in self.platform.services.items():
                if name != "agents":
                    for router in service.routers():
                        app.include_router(router)
            self._transport = httpx.ASGITransport(app=app)
        return self._transport

    async def token(self, workspace_id: str) -> str:
        if workspace_id in self._tokens:
            return self._tokens[workspace_id]
        async with self._minting.setdefault(workspace_id, asyncio.Lock()):
            if workspace_id not in self._tokens:
                vault = self.platform.vault
                try:
                    token = (await vault.get(workspace_id, VAULT_PROVIDER, VAULT_NAME)).reveal("token")
                except NotFound:
                    token = await self.platform.workspaces.issue_token(workspace_id, name="agents-loopback")
                    await vault.put(workspace_id, VAULT_PROVIDER, {"token": token}, name=VAULT_NAME,
                                    origin="agents")
                self._tokens[workspace_id] = token
        return self._tokens[workspace_id]

    def client(self, workspace_id: str) -> IonfluxClient:
        client = self._clients.get(workspace_id)
        if client is None:
            client = IonfluxClient("http://ionflux.loopback", None, transport=self._app(),
                                   auth=_WorkspaceToken(self, workspace_id))
            self._clients[workspace_id] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
