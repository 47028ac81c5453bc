"""The process-wide container of core mechanisms, built once from settings and shared by every service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ionflux.core.bus import EventBus
from ionflux.core.db import Database
from ionflux.core.observability import Metrics
from ionflux.core.settings import Settings
from ionflux.core.vault import Vault
from ionflux.core.workspaces import WorkspaceDirectory

if TYPE_CHECKING:
    from ionflux.core.service import Service


@dataclass
class Platform:
    settings: Settings
    db: Database
    vault: Vault
    bus: EventBus
    workspaces: WorkspaceDirectory
    metrics: Metrics = field(default_factory=Metrics)
    services: dict[str, Service] = field(default_factory=dict)  # filled by ionflux.services
    # Where the relay, consumers and schedulers run, for /healthz (set by `ionflux serve`).
    worker_status: Callable[[], dict[str, Any]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Platform:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url, pool_size=settings.db_pool_size)
        metrics = Metrics()
        return cls(
            settings=settings,
            db=db,
            vault=Vault.from_settings(settings, db),
            bus=EventBus.from_settings(settings, db, metrics),
            workspaces=WorkspaceDirectory(db, token_cache_seconds=settings.token_cache_seconds),
            metrics=metrics,
        )

    async def start(self, *, relay: bool = True, consumers: bool = True) -> None:
        await self.vault.load_platform_credentials(self.settings)
        await self.bus.start(relay=relay, consumers=consumers)

    async def stop(self) -> None:
        await self.bus.stop()
        await self.db.dispose()
