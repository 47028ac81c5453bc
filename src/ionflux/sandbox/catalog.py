"""The simulators `ionflux sandbox` can start, and the settings that point IONFLUX's adapters at them.

Each entry names a factory (import path, imported only when that simulator starts) returning an ASGI
app, and the `IONFLUX_*` variables to set so the real adapters talk to it instead of the provider.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp

DEMO_CLIENT_ID = "ionflux-demo-client"
DEMO_CLIENT_SECRET = "ionflux-demo-secret"  # noqa: S105 - a sandbox credential, public on purpose


@dataclass(frozen=True)
class SimulatorEntry:
    name: str
    factory: str  # "module:function" returning an ASGI app
    description: str
    settings: tuple[str, ...] = ()  # IONFLUX_* variables set to the simulator's base URL

    def build(self) -> ASGIApp:
        module_name, _, attr = self.factory.partition(":")
        factory: Callable[[], ASGIApp] = getattr(importlib.import_module(module_name), attr)
        return factory()


def oauth_demo_app() -> ASGIApp:
    """The generic OAuth provider with a demo client allowed to redirect to a local IONFLUX."""
    from ionflux.sandbox.oauth_provider import OAuthProviderSimulator

    simulator = OAuthProviderSimulator()
    simulator.register_client(
        DEMO_CLIENT_ID, DEMO_CLIENT_SECRET,
        [f"http://127.0.0.1:{port}/oauth/callback" for port in (8080, 8000)],
    )
    return simulator.app


def openai_demo_app() -> ASGIApp:
    from ionflux.sandbox.openai import OpenAISimulator

    return OpenAISimulator().app


def anthropic_demo_app() -> ASGIApp:
    from ionflux.sandbox.anthropic import AnthropicSimulator

    return AnthropicSimulator().app


SIMULATORS: dict[str, SimulatorEntry] = {
    entry.name: entry
    for entry in (
        SimulatorEntry("oauth", "ionflux.sandbox.catalog:oauth_demo_app",
                       "generic OAuth 2.0 provider (authorize, token, refresh rotation, revoke)"),
        SimulatorEntry("shopify", "ionflux.sandbox.shopify:demo_app",
                       "Shopify (OAuth, GraphQL + REST Admin, webhooks): IONFLUX_SHOPIFY_BASE_URL=<url>/shops/{shop}"),
        SimulatorEntry("whatsapp", "ionflux.sandbox.whatsapp:demo_app",
                       "WhatsApp Cloud API (messages, templates, signed webhooks)", ("IONFLUX_WHATSAPP_BASE_URL",)),
        SimulatorEntry("openai", "ionflux.sandbox.catalog:openai_demo_app",
                       "OpenAI (chat, streams, embeddings, transcriptions): IONFLUX_OPENAI_BASE_URL=<url>/v1"),
        SimulatorEntry("anthropic", "ionflux.sandbox.catalog:anthropic_demo_app",
                       "Anthropic Messages API (with streams)", ("IONFLUX_ANTHROPIC_BASE_URL",)),
    )
}
