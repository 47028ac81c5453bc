"""Fixtures for the LLM service tests: the OpenAI, Anthropic and DeepSeek simulators on loopback, and the app
serving only the LLM service, configured through its environment variables as in production."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ionflux.app import create_app
from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.platform import Platform
from ionflux.llm.service_plugin import LLMService
from ionflux.sandbox import SimulatorServer
from ionflux.sandbox.anthropic import AnthropicSimulator
from ionflux.sandbox.openai import OpenAISimulator
from ionflux.services import services_running

PLATFORM_KEYS = {"openai": "sk-platform-openai-0001", "anthropic": "sk-ant-platform-0001",
                 "deepseek": "sk-platform-deepseek-0001"}
PRICES = {"openai:gpt-4o": {"input": 2.5, "output": 10.0}, "anthropic:claude-3-haiku": {"input": 0.25, "output": 1.25},
          "deepseek:deepseek-v4-flash": {"input": 0.27, "output": 1.1},
          "openai:text-embedding-3-small": {"input": 0.02, "output": 0.0}}


@dataclass
class Sims:
    openai: OpenAISimulator
    openai_server: SimulatorServer
    anthropic: AnthropicSimulator
    anthropic_server: SimulatorServer
    deepseek: OpenAISimulator
    deepseek_server: SimulatorServer
    media_server: SimulatorServer
    media: dict[str, tuple[bytes, str]]  # path -> (body, content type) served by the media server


def media_app(files: dict[str, tuple[bytes, str]]) -> Starlette:
    async def serve(request: Request) -> Response:
        path = request.url.path
        if path.startswith("/redirect"):
            return RedirectResponse(request.query_params["to"], status_code=302)
        if path not in files:
            return Response(status_code=404)
        body, content_type = files[path]
        return Response(body, media_type=content_type)

    return Starlette(routes=[Route("/{path:path}", serve)])


@contextmanager
def running_sims() -> Iterator[Sims]:
    """The simulators on background threads (each with its own loop), for a whole module or session."""
    oai, ant, ds = OpenAISimulator(), AnthropicSimulator(), OpenAISimulator("deepseek")
    files: dict[str, tuple[bytes, str]] = {}
    servers = [SimulatorServer(oai.app, name="openai").start(), SimulatorServer(ant.app, name="anthropic").start(),
               SimulatorServer(ds.app, name="deepseek").start(),
               SimulatorServer(media_app(files), name="media").start()]
    try:
        yield Sims(oai, servers[0], ant, servers[1], ds, servers[2], servers[3], files)
    finally:
        for server in servers:
            server.stop()


def reset(sims: Sims) -> Sims:
    for sim in (sims.openai, sims.anthropic, sims.deepseek):
        sim.state.__init__()  # type: ignore[misc]
        sim.state.keys = set(PLATFORM_KEYS.values())
    for server in (sims.openai_server, sims.anthropic_server, sims.deepseek_server, sims.media_server):
        server.faults.reset_all()
    sims.media.clear()
    return sims


def llm_env(sims: Sims, **extra: Any) -> dict[str, str]:
    env = {
        "IONFLUX_OPENAI_BASE_URL": sims.openai_server.base_url + "/v1",
        "IONFLUX_ANTHROPIC_BASE_URL": sims.anthropic_server.base_url,
        "IONFLUX_DEEPSEEK_BASE_URL": sims.deepseek_server.base_url,
        "IONFLUX_OPENAI_TIMEOUT": "5",
        "IONFLUX_ANTHROPIC_TIMEOUT": "5",
        "IONFLUX_LLM_PRICES": json.dumps(PRICES),
        "IONFLUX_LLM_FETCH_ALLOW_NETWORKS": json.dumps(["127.0.0.1/32"]),
        "IONFLUX_LLM_USAGE_FLUSH_SECONDS": "0.05",
    }
    env.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return env


@dataclass
class LLMApp:
    client: httpx.AsyncClient
    service: LLMService
    platform: Platform
    app: Any


@asynccontextmanager
async def llm_app(platform: Platform, sims: Sims, monkeypatch: pytest.MonkeyPatch,
                  **settings: Any) -> AsyncIterator[LLMApp]:
    """The app serving only the LLM service, configured by environment variables as in production."""
    for name, value in llm_env(sims, **settings).items():
        monkeypatch.setenv(name, value)
    for provider, key in PLATFORM_KEYS.items():
        await platform.vault.put(PLATFORM_WORKSPACE, provider, {"api_key": key})
    app = create_app(platform, only=["llm"], manage_lifecycle=False)
    service = platform.services["llm"]
    assert isinstance(service, LLMService)
    async with services_running(list(platform.services.values())), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ionflux.test", timeout=30
    ) as client:
        yield LLMApp(client, service, platform, app)


def sqlite_only(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "ionflux.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0"
                       "gAAAABJRU5ErkJggg==")


# Fixtures shared by the LLM test modules (import the functions; pytest registers them by `name`).
@pytest.fixture(scope="module", name="module_sims")
def module_llm_sims() -> Iterator[Sims]:
    """One OpenAI + Anthropic simulator pair per test module."""
    with running_sims() as s:
        yield s


@pytest.fixture(name="sims")
def llm_sims(module_sims: Sims) -> Sims:
    """The module's simulators, reset before each test."""
    return reset(module_sims)


@pytest.fixture(name="database_url")
def sqlite_database_url(tmp_path: Path, sqlite_template: Path) -> str:
    return sqlite_only(tmp_path, sqlite_template)
