"""`ionflux shopify sync` is wired into the CLI and fails in one line for a connection that is not there."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ionflux.cli import app


def test_shopify_sync_names_the_missing_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IONFLUX_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("IONFLUX_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["shopify", "sync", "no-such-connection", "--workspace", "ws-1"])
    assert result.exit_code == 2
    assert "no Shopify connection no-such-connection" in result.output


def test_shopify_sync_help_lists_the_command() -> None:
    result = CliRunner().invoke(app, ["shopify", "--help"])
    assert result.exit_code == 0 and "sync" in result.output
