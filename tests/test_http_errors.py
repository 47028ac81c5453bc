"""Bad input gets a 4xx with a message that names the problem; never a 500."""

from __future__ import annotations

import httpx

from ionflux.core.platform import Platform

from .conftest import WorkspaceHandle


async def test_malformed_json_is_400(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    r = await client.post("/v1/events", headers={**workspace.headers, "content-type": "application/json"},
                          content=b'{"type": "platform.x.events.a.b", "data": ')
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_REQUEST"
    assert "malformed JSON" in r.json()["error"]["message"]


async def test_unknown_field_is_named(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    r = await client.post("/v1/events", headers=workspace.headers,
                          json={"type": "platform.x.events.a.b", "data": {}, "colour": "red"})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "colour"
    assert "unknown field" in r.json()["error"]["message"]


async def test_wrong_type_is_named(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    r = await client.post("/v1/events", headers=workspace.headers,
                          json={"type": "platform.x.events.a.b", "data": "not-an-object"})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "data"


async def test_oversized_body_is_413(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, platform: Platform
) -> None:
    limit = platform.settings.max_body_bytes
    big = b'{"type": "platform.x.events.a.b", "data": {"blob": "' + b"x" * limit + b'"}}'
    r = await client.post("/v1/events", headers={**workspace.headers, "content-type": "application/json"},
                          content=big)
    assert r.status_code == 413
    assert "IONFLUX_MAX_BODY_BYTES" in r.json()["error"]["message"]

    # A body streamed without Content-Length is counted too.
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = await client.post("/v1/events", headers={**workspace.headers, "content-type": "application/json"},
                          content=chunks())
    assert r.status_code == 413


async def test_missing_unknown_and_malformed_tokens_are_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer ifx_nope"}, {"Authorization": "Basic abc"}):
        r = await client.get("/v1/events", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "AUTH_FAILED"


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


async def test_admin_only_endpoint_refuses_workspace_token(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, admin_headers: dict[str, str]
) -> None:
    assert (await client.post("/v1/workspaces", headers=workspace.headers,
                              json={"name": "x"})).status_code == 401
    r = await client.post("/v1/workspaces", headers=admin_headers, json={"name": ""})
    assert r.status_code == 400 and r.json()["error"]["field"] == "name"
    r = await client.post("/v1/workspaces", headers=admin_headers, json={"name": "new"})
    assert r.status_code == 201
    token = r.json()["token"]
    me = await client.get("/v1/workspace", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["id"] == r.json()["id"]


async def test_services_declare_their_own_body_limits(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, platform: Platform
) -> None:
    limit = platform.settings.max_body_bytes
    # A memory upsert bigger than the app-wide limit is not refused by size (it reaches the route).
    body = b'{"vectors": [' + b",".join(b'{"id": "v%d", "values": [0.5, 0.5]}' % i for i in range(40_000)) + b"]}"
    assert len(body) > limit
    r = await client.put("/v1/memory/namespaces/big/vectors", headers={**workspace.headers,
                         "content-type": "application/json"}, content=body)
    assert r.status_code != 413, r.text
    # The same size elsewhere is refused.
    r = await client.post("/v1/events", headers={**workspace.headers, "content-type": "application/json"},
                          content=body)
    assert r.status_code == 413
