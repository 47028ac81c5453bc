"""The platform face: health, metrics, OpenAPI, request ids, settings errors, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ionflux.core.settings import SettingsError, load_settings

from .conftest import WorkspaceHandle
from .server import ServerProcess


async def test_healthz_checks_database_and_bus(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "bus": "ok"}}


async def test_metrics_and_request_id(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    r = await client.get("/v1/workspace", headers={**workspace.headers, "X-Request-Id": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    assert (await client.get("/v1/workspace", headers=workspace.headers)).headers["x-request-id"]
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'ionflux_http_requests_total{method="GET",route="/v1/workspace",status="200"}' in metrics.text


async def test_openapi_lists_the_platform_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/healthz", "/v1/credentials/{provider}", "/v1/events", "/v1/workspaces"):
        assert path in paths


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IONFLUX_DATABASE_URL", "mysql://nope")
    with pytest.raises(SettingsError, match="IONFLUX_DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("IONFLUX_DATABASE_URL", "")
    monkeypatch.setenv("IONFLUX_MAX_BODY_BYTES", "lots")
    with pytest.raises(SettingsError, match="IONFLUX_MAX_BODY_BYTES"):
        load_settings()
    monkeypatch.delenv("IONFLUX_MAX_BODY_BYTES")
    monkeypatch.setenv("IONFLUX_MASTER_KEY_SOURCE", "env")
    with pytest.raises(SettingsError, match="IONFLUX_MASTER_KEY"):
        load_settings()


def test_toml_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ionflux.toml"
    config.write_text('bus_url = "amqp://guest:guest@127.0.0.1:5672/"\nmax_body_bytes = 2048\n')
    monkeypatch.setenv("IONFLUX_CONFIG_FILE", str(config))
    settings = load_settings()
    assert settings.max_body_bytes == 2048
    assert settings.masked()["bus_url"] == "amqp://guest:***@127.0.0.1:5672/"


def test_service_settings_come_from_their_toml_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ionflux.agents.settings import AgentSettings
    from ionflux.messaging.settings import WhatsAppSettings

    config = tmp_path / "ionflux.toml"
    config.write_text("max_body_bytes = 4096\n\n[whatsapp]\nmessages_per_second = 20\nwindow_hours = 12\n")
    monkeypatch.setenv("IONFLUX_CONFIG_FILE", str(config))
    monkeypatch.setenv("IONFLUX_WHATSAPP_WINDOW_HOURS", "6")  # the environment wins over the file
    whatsapp = WhatsAppSettings()
    assert (whatsapp.messages_per_second, whatsapp.window_hours) == (20.0, 6.0)
    assert AgentSettings().concurrency == AgentSettings.model_fields["concurrency"].default  # no [agents] table
    assert load_settings().max_body_bytes == 4096  # the top level stays the core's
    config.write_text("[whatsapp]\nmessages_per_second = \"fast\"\n")
    with pytest.raises(SettingsError, match=r"^IONFLUX_WHATSAPP_MESSAGES_PER_SECOND \(\[whatsapp\] messages_"):
        WhatsAppSettings()


def _cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IONFLUX_")}
    full_env.update({"IONFLUX_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run([sys.executable, "-m", "ionflux.cli", *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


def test_cli_workspace_create_and_config_show(tmp_path: Path) -> None:
    created = _cli(["workspace", "create", "acme", "--json"], tmp_path)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["token"].startswith("ifx_") and body["id"]
    shown = _cli(["config", "show"], tmp_path, IONFLUX_ADMIN_TOKEN="super-secret-admin-token")
    assert shown.returncode == 0
    assert "super-secret-admin-token" not in shown.stdout
    assert json.loads(shown.stdout)["admin_token"] == "********"
    assert json.loads(shown.stdout)["whatsapp"]["window_hours"] == 24.0  # every service's section is shown
    bad_section = _cli(["config", "show"], tmp_path, IONFLUX_AGENTS_CONCURRENCY="many")
    assert bad_section.returncode == 2 and "IONFLUX_AGENTS_CONCURRENCY" in bad_section.stderr
    bad = _cli(["config", "show"], tmp_path, IONFLUX_BUS_URL="kafka://x")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "IONFLUX_BUS_URL" in bad.stderr


def test_serve_subprocess_answers_healthz(tmp_path: Path) -> None:
    server = ServerProcess({"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": "",
                            "IONFLUX_BUS_URL": "embedded://"}, tmp_path)
    try:
        server.start()
        health = httpx.get(f"{server.url}/healthz", timeout=5)
        assert health.json()["status"] == "ok"
        # Structured JSON logs on the server's output, with a request id.
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        assert any(entry.get("request_id") for entry in lines)
    finally:
        server.stop()
