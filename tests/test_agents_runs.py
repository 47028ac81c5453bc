"""Runs: manual runs, retries with backoff, the breaker, cron without double runs, one runner per configuration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ionflux.agents.adapters import PORTS
from ionflux.agents.context import AgentContext, Trigger, Unavailable
from ionflux.agents.definitions import parse_definition
from ionflux.agents.models import AgentConfigurationRow, AgentRunRow
from ionflux.agents.namespaces import resolve_template
from ionflux.agents.registry import AgentRegistry
from ionflux.agents.runner import RunExecutor
from ionflux.agents.scheduler import CronScheduler, latest_slot
from ionflux.agents.settings import AgentSettings
from ionflux.agents.store import create_configuration, put_definition
from ionflux.core.db import Database
from ionflux.core.platform import Platform
from tests.agents_support import FunctionAgent, agents_client_fixture, poll  # noqa: F401 - fixture
from tests.conftest import WorkspaceHandle

Client = tuple[httpx.AsyncClient, Any]
FLAKY_YAML = """
id: flaky
name: Flaky
version: "1"
inputs: {fail_times: {type: integer, default: 0}}
outputs: {ok: {type: boolean, required: true}}
"""
TICK_YAML = """
id: ticker
name: Ticker
version: "1"
triggers: [{type: schedule, cron: "*/5 * * * *"}, {type: schedule, cron: "0 9 * * *", timezone: America/New_York}]
"""


def scripted(failures: int, *, bad_output: bool = False) -> FunctionAgent:
    async def run(ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        ctx.state.put(f"attempt:{len(agent.calls)}", {"seen": True})
        if len(agent.calls) <= failures:
            raise RuntimeError(f"boom {len(agent.calls)}")
        return {"ok": "yes"} if bad_output else {"ok": True, "input": trigger.input}

    agent = FunctionAgent(run)
    return agent


async def setup_flaky(client: httpx.AsyncClient, service: Any, ws: WorkspaceHandle, agent: FunctionAgent) -> str:
    service.registry.add_implementation("flaky", lambda: agent)
    r = await client.put("/v1/agents/definitions/flaky", content=FLAKY_YAML,
                         headers={**ws.headers, "content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    r = await client.post("/v1/agents/configurations", headers=ws.headers, json={"definition_id": "flaky"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_manual_run_waits_and_is_idempotent(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    agent = scripted(0)
    cfg = await setup_flaky(client, service, workspace, agent)
    body = {"input": {"order": 7}, "idempotency_key": "k-1"}
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json=body)
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["status"] == "succeeded" and run["trigger"]["type"] == "manual"
    assert run["output"] == {"ok": True, "input": {"order": 7}}
    again = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json=body)
    assert again.json()["id"] == run["id"] and len(agent.calls) == 1
    fetched = await client.get(f"/v1/agents/runs/{run['id']}", headers=workspace.headers)
    assert fetched.json()["status"] == "succeeded"
    r = await client.post("/v1/agents/configurations/nope/run", headers=workspace.headers)
    assert r.status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_retry_with_backoff_then_success(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    agent = scripted(2)
    cfg = await setup_flaky(client, service, workspace, agent)
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json={})
    run = r.json()
    assert run["status"] == "succeeded" and run["attempts"] == 3, run
    view = (await client.get(f"/v1/agents/configurations/{cfg}", headers=workspace.headers)).json()
    assert view["status"] == "active" and view["consecutive_failures"] == 0
    # only the successful attempt's state writes were kept
    async with service.platform.db.tenant(workspace.id) as session:
        from sqlalchemy import select

        from ionflux.agents.models import AgentStateRow

        keys = (await session.scalars(select(AgentStateRow.key))).all()
    assert keys == ["attempt:3"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_breaker_pauses_after_three_consecutive_failures(
    agents_client: Client, workspace: WorkspaceHandle
) -> None:
    client, service = agents_client
    agent = scripted(100)
    cfg = await setup_flaky(client, service, workspace, agent)
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json={})
    run = r.json()
    assert run["status"] == "failed" and run["attempts"] == 3 and "boom 3" in run["error"]
    view = (await client.get(f"/v1/agents/configurations/{cfg}", headers=workspace.headers)).json()
    assert view["status"] == "paused" and "3 consecutive" in view["paused_reason"]
    events = (await client.get("/v1/events?topic=platform.agents.events.configurations.paused",
                               headers=workspace.headers)).json()["events"]
    assert len(events) == 1 and events[0]["data"]["configuration_id"] == cfg
    assert "boom 3" in events[0]["data"]["reason"] and events[0]["subject"] == cfg
    failed = (await client.get("/v1/events?topic=platform.agents.events.runs.*", headers=workspace.headers)).json()
    assert [(e["type"], e["data"]["attempts"]) for e in failed["events"]] == [("platform.agents.events.runs.failed", 3)]
    r = await client.post(f"/v1/agents/configurations/{cfg}/run", headers=workspace.headers, json={})
    assert r.status_code == 409 and r.json()["error"]["field"] == "status"
    # resuming clears the breaker; a good run follows
    service.registry.add_implementation("flaky", lambda: scripted(0))
    r = await client.patch(f"/v1/agents/configurations/{cfg}", headers=workspace.headers, json={"status": "active"})
    assert r.json()["status"] == "active" and r.json()["paused_reason"] is None
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json={})
    assert r.json()["status"] == "succeeded"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_output_is_checked_against_the_outputs_schema(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    cfg = await setup_flaky(client, service, workspace, scripted(0, bad_output=True))
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json={})
    assert r.json()["status"] == "failed" and "output.ok" in r.json()["error"]


async def _configure(db: Database, registry: AgentRegistry, ws: str, yaml_text: str) -> str:
    definition = parse_definition(yaml_text)
    async with db.tenant(ws) as session:
        if registry.builtin(definition.id) is None:
            await put_definition(session, registry, definition)
        row = await create_configuration(session, definition, workspace_id=ws, name=None, yaml_config=None,
                                         brand_id=None, resolve=resolve_template)
        row.created_at = datetime(2026, 3, 1, 11, 58, tzinfo=UTC)
        return row.id


async def _runs(db: Database, ws: str, cfg_id: str) -> list[AgentRunRow]:
    from sqlalchemy import select

    async with db.tenant(ws) as session:
        return list((await session.scalars(select(AgentRunRow).where(AgentRunRow.configuration_id == cfg_id)
                                           .order_by(AgentRunRow.scheduled_for))).all())


async def test_two_schedulers_on_one_database_never_double_run(platform: Platform, workspace: WorkspaceHandle) -> None:
    db = platform.db
    registry = AgentRegistry()
    cfg = await _configure(db, registry, workspace.id, TICK_YAML)
    # a second process: its own engine on the same database
    other_db = Database(db.url)
    try:
        a, b = CronScheduler(db, registry, tick_seconds=1), CronScheduler(other_db, registry, tick_seconds=1)
        t0 = datetime(2026, 3, 1, 12, 0, 0, 300000, tzinfo=UTC)
        for step in range(3):  # 12:00, 12:05, 12:10: both schedulers tick at (almost) the same moment
            now = t0 + timedelta(minutes=5 * step)
            inserted = await asyncio.gather(a.tick(now), b.tick(now + timedelta(milliseconds=40)))
            assert sum(inserted) == 1, (step, inserted)
        # nothing more until the next slot
        assert await a.tick(t0 + timedelta(minutes=11)) == 0
        # an outage over many slots coalesces into the latest one only
        assert await b.tick(t0 + timedelta(minutes=90)) == 1
        # 09:00 in New York is 14:00 UTC in March (before DST): the second schedule fires then
        assert await a.tick(datetime(2026, 3, 1, 14, 0, 1, tzinfo=UTC)) == 2
        runs = await _runs(db, workspace.id, cfg)
        slots = [r.scheduled_for.replace(tzinfo=UTC) if r.scheduled_for.tzinfo is None else r.scheduled_for
                 for r in runs if r.scheduled_for]
        assert [s.strftime("%H:%M") for s in slots] == ["12:00", "12:05", "12:10", "13:30", "14:00", "14:00"]
        assert len(runs) == 6 and all(r.trigger_type == "schedule" and r.status == "queued" for r in runs)
        assert len({r.trigger_key for r in runs}) == 6
    finally:
        await other_db.dispose()


def test_latest_slot_reads_cron_in_its_time_zone() -> None:
    # 08:00 daily in New York: 13:00 UTC in winter, 12:00 UTC in summer (DST)
    assert latest_slot("0 8 * * *", "America/New_York", datetime(2026, 1, 15, 13, 30, tzinfo=UTC)).hour == 13
    assert latest_slot("0 8 * * *", "America/New_York", datetime(2026, 7, 15, 12, 30, tzinfo=UTC)).hour == 12
    exact = datetime(2026, 1, 15, 12, 5, tzinfo=UTC)
    assert latest_slot("*/5 * * * *", "UTC", exact) == exact


async def test_two_executors_run_each_run_once(platform: Platform, workspace: WorkspaceHandle) -> None:
    registry = AgentRegistry()
    seen: list[str] = []
    running = 0
    overlap = False

    async def work(ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        nonlocal running, overlap
        running += 1
        overlap = overlap or running > 1  # runs of one configuration must never overlap
        await asyncio.sleep(0)
        seen.append(ctx.run_id)
        running -= 1
        return {}

    registry.add_implementation("ticker", lambda: FunctionAgent(work))
    db = platform.db
    cfg = await _configure(db, registry, workspace.id, TICK_YAML)
    scheduler = CronScheduler(db, registry, tick_seconds=1)
    start = datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC)
    for step in range(6):
        await scheduler.tick(start + timedelta(minutes=5 * step))
    other_db = Database(db.url)
    settings = AgentSettings(retry_base_seconds=0)
    ports = lambda *_: {n: Unavailable(n) for n in PORTS}  # noqa: E731 - the work above needs none
    try:
        clock = lambda: start + timedelta(hours=1)  # noqa: E731
        e1 = RunExecutor(db, registry, settings, ports, clock=clock)
        e2 = RunExecutor(other_db, registry, settings, ports, clock=clock)
        done = await asyncio.gather(e1.run_due(), e2.run_due(), e1.run_due())
        assert sum(done) == 6 and len(seen) == 6 == len(set(seen)) and not overlap
        assert {r.status for r in await _runs(db, workspace.id, cfg)} == {"succeeded"}
        async with db.tenant(workspace.id) as session:
            row = await session.get(AgentConfigurationRow, cfg)
            assert row is not None and row.lease_owner is None  # released
    finally:
        await other_db.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_paused_configuration_is_not_triggered(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    agent = scripted(0)
    cfg = await setup_flaky(client, service, workspace, agent)
    await client.patch(f"/v1/agents/configurations/{cfg}", headers=workspace.headers, json={"status": "paused"})
    r = await client.post(f"/v1/agents/configurations/{cfg}/run", headers=workspace.headers, json={})
    assert r.status_code == 409
    await poll(lambda: _no_runs_after_drain(service), what="an idle runner")
    assert agent.calls == []


async def _no_runs_after_drain(service: Any) -> bool:
    return await service.executor.run_due() == 0
