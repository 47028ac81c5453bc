"""Which services exist, and building the ones a process runs (`--only`).

Each entry is an import path, so a process that serves one service never imports the others
(start-up time and memory). The platform service is always on; `--only` picks among the rest.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from ionflux.core.platform import Platform
from ionflux.core.service import Service
from ionflux.core.settings import ServiceSettings

ALWAYS = "platform"
SERVICES: dict[str, str] = {
    "platform": "ionflux.core.platform_service:PlatformService",
    "shopify": "ionflux.integrations.shopify.service:ShopifyService",
    "messaging": "ionflux.messaging.service_plugin:MessagingService",
    "email": "ionflux.email.service_plugin:EmailPlugin",
    "agents": "ionflux.agents.service_plugin:AgentService",
    "llm": "ionflux.llm.service_plugin:LLMService",
    "memory": "ionflux.memory.service_plugin:MemoryService",
}


def service_settings() -> dict[str, ServiceSettings]:
    """Every service's settings, loaded (so a bad value raises `SettingsError`), by config-file section."""
    for path in SERVICES.values():
        package = path.partition(":")[0].rsplit(".", 1)[0]
        if importlib.util.find_spec(f"{package}.settings") is not None:
            importlib.import_module(f"{package}.settings")
    return {section: cls() for section, cls in sorted(ServiceSettings.sections.items())}


def resolve_services(only: Iterable[str] | None) -> list[str]:
    """The service names a process runs: all of them, or the platform plus those named in `only`."""
    chosen = [name.strip() for name in (only or []) if name.strip()]
    if not chosen:
        return list(SERVICES)
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    return [ALWAYS, *[name for name in chosen if name != ALWAYS]]


def build_services(platform: Platform, names: Iterable[str]) -> list[Service]:
    services: list[Service] = []
    for name in names:
        module_name, _, class_name = SERVICES[name].partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        service: Service = cls(platform)
        platform.services[name] = service
        services.append(service)
    return services


@asynccontextmanager
async def services_running(services: list[Service]) -> AsyncIterator[None]:
    """Start `services` in order (after the platform has started) and stop them in reverse."""
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            await service.stop()


@asynccontextmanager
async def platform_running(
    platform: Platform, services: list[Service], *, relay: bool = True, consumers: bool = True
) -> AsyncIterator[None]:
    await platform.start(relay=relay, consumers=consumers)
    try:
        async with services_running(services):
            yield
    finally:
        await platform.stop()
