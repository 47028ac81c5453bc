"""In-process calls to the HTTP API of the services this process runs, acting for one workspace.

Where a service publishes its capability only as HTTP (LLM text generation, Shopify reads), in-process
agents call that same contract through an ASGI app that exists only in memory: the services' own
routers and error mapping, with the workspace fixed by the bridge instead of a token. The app is never
served, so nothing outside this process can reach it; agents get ports, never this client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI, Request

from ionflux.client.http import IonfluxClient
from ionflux.core.auth import current_workspace
from ionflux.core.error_handlers import install_error_handlers

if TYPE_CHECKING:
    from ionflux.core.platform import Platform

_WORKSPACE = "x-ionflux-loopback-workspace"


def _workspace_from_bridge(request: Request) -> str:
    return request.headers[_WORKSPACE]


class Loopback:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._transport: httpx.ASGITransport | None = None
        self._clients: dict[str, IonfluxClient] = {}

    def _app(self) -> httpx.ASGITransport:
        if self._transport is None:  # built on first use: every service of the process exists by then
            app = FastAPI()
            app.state.platform = self.platform
            install_error_handlers(app)
            for name, service in self.platform.services.items():
                if name != "agents":
                    for router in service.routers():
                        app.include_router(router)
            app.dependency_overrides[current_workspace] = _workspace_from_bridge
            self._transport = httpx.ASGITransport(app=app)
        return self._transport

    def client(self, workspace_id: str) -> IonfluxClient:
        client = self._clients.get(workspace_id)
        if client is None:
            client = IonfluxClient("http://ionflux.loopback", None, transport=self._app(),
                                   headers={_WORKSPACE: workspace_id})
            self._clients[workspace_id] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
