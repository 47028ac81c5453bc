"""Shared fixtures: databases (SQLite and PostgreSQL), a started platform, an HTTP client, workspaces.

Tests that need a server skip with a reason when it is absent, unless IONFLUX_REQUIRE_SERVICES=1
(set by .ci/run), in which case they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ionflux.app import create_app
from ionflux.core.db import Database
from ionflux.core.platform import Platform
from ionflux.core.settings import Settings
from ionflux.services import services_running

PG_ADMIN_DSN = os.environ.get("IONFLUX_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("IONFLUX_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ADMIN_TOKEN = "admin-test-token-0123456789"
REQUIRE_SERVICES = os.environ.get("IONFLUX_REQUIRE_SERVICES") == "1"


def need_service(name: str, reachable: bool) -> None:
    if reachable:
        return
    message = f"{name} is not reachable on loopback"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and IONFLUX_REQUIRE_SERVICES=1 says it must be")
    pytest.skip(message)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{dbname}"


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("tmpl") / "template.db"
    Database(f"sqlite+aiosqlite:///{path}").upgrade()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A migrated PostgreSQL database used as CREATE DATABASE ... TEMPLATE for each test."""
    if not port_open("127.0.0.1", 5432):
        yield None
        return
    name = f"ionflux_tmpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
    Database(_pg_url(name)).upgrade()
    yield name
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_template: str | None
) -> Iterator[str]:
    """A fresh, migrated, empty database: a SQLite file, or a PostgreSQL database on 127.0.0.1."""
    if request.param == "sqlite":
        path = tmp_path / "ionflux.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    need_service("PostgreSQL (127.0.0.1:5432)", pg_template is not None)
    name = f"ionflux_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    yield _pg_url(name)
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    yield db
    await db.dispose()


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "bus_url": "embedded://",
            "master_key_source": "file",
            "admin_token": ADMIN_TOKEN,
            "relay_poll_seconds": 0.05,
            # Tests change rows behind the platform's back; the caches have their own tests.
            "token_cache_seconds": 0.0,
            "credential_cache_seconds": 0.0,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def platform(settings_factory: Callable[..., Settings]) -> AsyncIterator[Platform]:
    plat = Platform.from_settings(settings_factory())
    await plat.start()
    yield plat
    await plat.stop()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(platform, manage_lifecycle=False)
    transport = httpx.ASGITransport(app=app)
    async with services_running(list(platform.services.values())), httpx.AsyncClient(
        transport=transport, base_url="http://ionflux.test"
    ) as c:
        yield c


@dataclass(frozen=True)
class WorkspaceHandle:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def workspace(platform: Platform) -> WorkspaceHandle:
    created = await platform.workspaces.create("acme")
    return WorkspaceHandle(created.id, created.token)


@pytest.fixture
async def other_workspace(platform: Platform) -> WorkspaceHandle:
    created = await platform.workspaces.create("globex")
    return WorkspaceHandle(created.id, created.token)


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def amqp_url() -> str:
    need_service("RabbitMQ (127.0.0.1:5672)", port_open("127.0.0.1", 5672))
    return AMQP_URL
