"""Cross-tenant access is impossible by construction: tenant sessions only see their own rows."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from ionflux.core.db import Database, TenancyViolation
from ionflux.core.models import ApiToken, OutboxEvent, Workspace
from ionflux.core.workspaces import WorkspaceDirectory

from .conftest import WorkspaceHandle


async def _two_workspaces(db: Database) -> tuple[str, str]:
    directory = WorkspaceDirectory(db)
    a = await directory.create("a")
    b = await directory.create("b")
    async with db.tenant(a.id) as s:
        s.add(OutboxEvent(type="platform.test.events.things.created", source="t", data={"n": 1}))
    return a.id, b.id


async def test_tenant_session_sees_only_its_rows(database: Database) -> None:
    a, b = await _two_workspaces(database)
    async with database.tenant(b) as s:
        assert (await s.scalars(select(OutboxEvent))).all() == []
        assert await s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        tokens = (await s.scalars(select(ApiToken))).all()
        assert [t.workspace_id for t in tokens] == [b]
        # Even naming A's workspace explicitly returns nothing.
        assert (await s.scalars(select(OutboxEvent).where(OutboxEvent.workspace_id == a))).all() == []
    async with database.tenant(a) as s:
        assert len((await s.scalars(select(OutboxEvent))).all()) == 1


async def test_tenant_session_cannot_update_or_delete_other_rows(database: Database) -> None:
    a, b = await _two_workspaces(database)
    async with database.tenant(b) as s:
        await s.execute(update(OutboxEvent).values(status="dead").execution_options(synchronize_session=False))
        await s.execute(delete(OutboxEvent).execution_options(synchronize_session=False))
    async with database.tenant(a) as s:
        rows = (await s.scalars(select(OutboxEvent))).all()
        assert [r.status for r in rows] == ["pending"]


async def test_get_by_primary_key_across_tenants_is_none(database: Database) -> None:
    a, b = await _two_workspaces(database)
    async with database.tenant(a) as s:
        seq = (await s.scalars(select(OutboxEvent.seq))).one()
    async with database.tenant(b) as s:
        assert await s.get(OutboxEvent, seq) is None


async def test_writing_another_workspaces_row_is_refused(database: Database) -> None:
    a, b = await _two_workspaces(database)
    with pytest.raises(TenancyViolation):
        async with database.tenant(b) as s:
            s.add(OutboxEvent(workspace_id=a, type="platform.test.events.things.created", source="t"))
    async with database.tenant(a) as s:
        assert len((await s.scalars(select(OutboxEvent))).all()) == 1


async def test_unscoped_session_refuses_tenant_tables(database: Database) -> None:
    async with database.sessions() as s:
        with pytest.raises(TenancyViolation):
            await s.execute(select(OutboxEvent))
        with pytest.raises(TenancyViolation):
            await s.execute(select(func.count()).select_from(OutboxEvent))
        # Non-tenant tables are fine without a scope.
        await s.execute(select(Workspace))


async def test_new_rows_are_stamped_with_the_session_workspace(database: Database) -> None:
    a, _ = await _two_workspaces(database)
    async with database.tenant(a) as s:
        row = OutboxEvent(type="platform.test.events.things.updated", source="t")
        s.add(row)
        await s.flush()
        assert row.workspace_id == a


async def test_workspace_token_gets_404_for_other_workspaces_resources(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle
) -> None:
    put = await client.put("/v1/credentials/openai", headers=workspace.headers,
                           json={"secrets": {"api_key": "sk-tenant-a-secret-000000"}})
    assert put.status_code == 200, put.text
    event = await client.post("/v1/events", headers=workspace.headers,
                              json={"type": "platform.test.events.things.created", "data": {"a": 1}})
    assert event.status_code == 202, event.text
    event_id = event.json()["id"]

    b = other_workspace.headers
    assert (await client.get("/v1/credentials/openai", headers=b)).status_code == 404
    assert (await client.delete("/v1/credentials/openai", headers=b)).status_code == 404
    listed = await client.get("/v1/credentials", headers=b)
    assert listed.status_code == 200 and "openai" not in listed.text
    events = await client.get("/v1/events", headers=b)
    assert events.status_code == 200 and events.json()["events"] == []
    # B cannot even use A's event id as a cursor: it is as unknown as a made-up id.
    cursor = await client.get("/v1/events", headers=b, params={"after": event_id})
    assert cursor.status_code == 400
    # A still has everything.
    assert (await client.get("/v1/credentials/openai", headers=workspace.headers)).status_code == 200
    mine = await client.get("/v1/events", headers=workspace.headers)
    assert [e["id"] for e in mine.json()["events"]] == [event_id]


async def test_admin_acts_for_a_named_workspace(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, admin_headers: dict[str, str]
) -> None:
    await client.put("/v1/credentials/openai", headers=workspace.headers,
                     json={"secrets": {"api_key": "sk-admin-visible-000000"}})
    as_ws = {**admin_headers, "X-Ionflux-Workspace": workspace.id}
    assert (await client.get("/v1/credentials/openai", headers=as_ws)).status_code == 200
    unnamed = await client.get("/v1/credentials/openai", headers=admin_headers)
    assert unnamed.status_code == 400 and "X-Ionflux-Workspace" in unnamed.json()["error"]["message"]
    unknown = await client.get("/v1/credentials/openai",
                               headers={**admin_headers, "X-Ionflux-Workspace": "no-such-ws"})
    assert unknown.status_code == 404
    # A workspace token cannot switch workspace with the header.
    other = await client.get("/v1/workspace", headers={**workspace.headers, "X-Ionflux-Workspace": "x"})
    assert other.json() == {"id": workspace.id}
