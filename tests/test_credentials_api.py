"""/v1/credentials: a secret goes in and never comes out; workspaces never see each other's."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Protocol

import httpx
import pytest

from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.observability import JsonFormatter, configure_logging
from ionflux.core.platform import Platform


class WorkspaceHandle(Protocol):  # the conftest fixtures' shape (imported by neither path nor package)
    @property
    def id(self) -> str: ...
    @property
    def headers(self) -> dict[str, str]: ...

# Shaped so that no redaction pattern would hide it: if it shows up in a log, the vault leaked it.
SECRET = "Qx7-unlogged-VALUE-42-zzwq"


async def test_put_then_get_shows_hints_only(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    r = await client.put("/v1/credentials/openai", headers=workspace.headers,
                         json={"secrets": {"api_key": SECRET}, "meta": {"label": "prod"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["provider"], body["name"], body["fields"], body["source"]) == (
        "openai", "default", ["api_key"], "workspace")
    assert body["hints"] == {"api_key": "…zzwq"} and body["hint"] == "…zzwq"
    assert body["meta"] == {"label": "prod"}

    for path in ("/v1/credentials/openai", "/v1/credentials"):
        r = await client.get(path, headers=workspace.headers)
        assert r.status_code == 200
        assert SECRET not in r.text and SECRET[:-4] not in r.text
    r = await client.get("/v1/credentials", headers=workspace.headers)
    assert [(c["provider"], c["hint"]) for c in r.json()["credentials"]] == [("openai", "…zzwq")]


async def test_named_credentials_and_delete(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    h = workspace.headers
    await client.put("/v1/credentials/stripe", headers=h, json={"secrets": {"secret_key": SECRET}})
    r = await client.put("/v1/credentials/stripe", headers=h,
                         json={"secrets": {"secret_key": SECRET + "2"}, "name": "test-mode"})
    assert r.json()["name"] == "test-mode"
    r = await client.get("/v1/credentials/stripe", headers=h, params={"name": "test-mode"})
    assert r.json()["hint"] == "…zwq2"

    r = await client.delete("/v1/credentials/stripe", headers=h)
    assert r.status_code == 204 and r.content == b""
    r = await client.get("/v1/credentials/stripe", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert (await client.delete("/v1/credentials/stripe", headers=h)).status_code == 404
    r = await client.get("/v1/credentials", headers=h)
    assert [c["name"] for c in r.json()["credentials"]] == ["test-mode"]


async def test_another_workspace_cannot_see_or_delete_it(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle, platform: Platform
) -> None:
    await client.put("/v1/credentials/openai", headers=workspace.headers, json={"secrets": {"api_key": SECRET}})
    other = other_workspace.headers
    assert (await client.get("/v1/credentials/openai", headers=other)).status_code == 404
    assert (await client.delete("/v1/credentials/openai", headers=other)).status_code == 404
    assert (await client.get("/v1/credentials", headers=other)).json() == {"credentials": []}
    assert (await platform.vault.get(workspace.id, "openai"))["api_key"] == SECRET  # untouched


async def test_platform_credentials_are_not_shown_to_workspaces(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, platform: Platform
) -> None:
    await platform.vault.put(PLATFORM_WORKSPACE, "openai", {"api_key": SECRET})
    assert (await client.get("/v1/credentials/openai", headers=workspace.headers)).status_code == 404
    assert (await client.get("/v1/credentials", headers=workspace.headers)).json() == {"credentials": []}
    assert (await platform.vault.resolve(workspace.id, "openai")).source == "platform"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/credentials/Open%20AI", {"secrets": {"api_key": SECRET}}, "provider"),
    ("/v1/credentials/x", {"secrets": {"api_key": SECRET}}, "provider"),
    ("/v1/credentials/openai", {"secrets": {}}, "secrets"),
    ("/v1/credentials/openai", {}, "secrets"),
    ("/v1/credentials/openai", {"secrets": {"api_key": SECRET}, "colour": "red"}, "colour"),
    ("/v1/credentials/openai", {"secrets": {"api_key": 42}}, "secrets.api_key"),
    ("/v1/credentials/openai", {"secrets": {"api_key": ""}}, "secrets.api_key"),
    ("/v1/credentials/openai", {"secrets": {"API KEY": SECRET}}, "secrets"),
    ("/v1/credentials/openai", {"secrets": {"api_key": SECRET}, "name": "no/slash"}, "name"),
])
async def test_bad_input_is_400_naming_the_field(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, path: str, body: dict[str, object], field: str
) -> None:
    r = await client.put(path, headers=workspace.headers, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["field"] == field
    assert SECRET not in r.text
    assert (await client.get("/v1/credentials", headers=workspace.headers)).json() == {"credentials": []}


async def test_admin_acts_for_a_named_workspace(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, admin_headers: dict[str, str]
) -> None:
    headers = {**admin_headers, "X-Ionflux-Workspace": workspace.id}
    r = await client.put("/v1/credentials/notion", headers=headers, json={"secrets": {"api_key": SECRET}})
    assert r.status_code == 200
    assert (await client.get("/v1/credentials/notion", headers=workspace.headers)).status_code == 200
    r = await client.get("/v1/credentials", headers=admin_headers)  # no workspace named
    assert r.status_code == 400 and r.json()["error"]["field"] == "X-Ionflux-Workspace"


async def test_every_route_needs_a_token(client: httpx.AsyncClient) -> None:
    for method, path in [("PUT", "/v1/credentials/openai"), ("GET", "/v1/credentials/openai"),
                         ("GET", "/v1/credentials"), ("DELETE", "/v1/credentials/openai")]:
        r = await client.request(method, path, json={"secrets": {"api_key": SECRET}})
        assert r.status_code == 401, (method, path)
        assert r.json()["error"]["code"] == "AUTH_FAILED"


@pytest.fixture
def captured_logs() -> Iterator[tuple[io.StringIO, list[logging.LogRecord]]]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("DEBUG")
    formatted = io.StringIO()
    as_json = logging.StreamHandler(formatted)
    as_json.setFormatter(JsonFormatter())
    records: list[logging.LogRecord] = []
    raw = logging.Handler()
    raw.emit = records.append  # type: ignore[method-assign]
    root.addHandler(as_json)
    root.addHandler(raw)
    try:
        yield formatted, records
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


async def test_no_secret_in_the_log_of_full_requests(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, platform: Platform,
    captured_logs: tuple[io.StringIO, list[logging.LogRecord]],
) -> None:
    formatted, records = captured_logs
    h = workspace.headers
    assert (await client.put("/v1/credentials/openai", headers=h, json={"secrets": {"api_key": SECRET}})).is_success
    assert (await client.get("/v1/credentials/openai", headers=h)).is_success
    assert (await client.put("/v1/credentials/openai", headers=h,
                             json={"secrets": {"api_key": SECRET}, "oops": SECRET})).status_code == 400
    resolved = await platform.vault.resolve(workspace.id, "openai")
    logging.getLogger("test").info("resolved %s", resolved)  # how a careless caller would log it
    assert resolved.secrets["api_key"] == SECRET

    text = formatted.getvalue()
    assert '"PUT /v1/credentials/openai 200"' in text and "credential stored" in text  # we did capture
    assert SECRET not in text
    for record in records:  # unformatted too: redaction must not be what hides it
        assert SECRET not in record.getMessage() and SECRET not in repr(vars(record))
