"""The agent bridge over HTTP: definitions, configurations, triggers, runs, retries and the breaker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ionflux.agents.context import AgentContext, Trigger
from ionflux.agents.service_plugin import AgentService
from ionflux.core.bus.outbox import list_events
from tests.agents_support import FunctionAgent, agents_client_fixture, poll  # noqa: F401 - fixture
from tests.conftest import WorkspaceHandle

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ECHO_YAML = """
id: echo
name: Echo
version: 1.0.0
triggers:
  - {type: event, topic: platform.test.events.things.*}
  - {type: webhook, topic: "platform.test.#", path: /webhooks/test}
inputs:
  greeting: {type: string, default: hello}
  limit: {type: integer, minimum: 1, required: true}
outputs:
  type: object
  properties: {said: {type: string}}
  required: [said]
memory: {type: vector, namespace_template: "echo_{{instance_id}}"}
stack: {models: ["openai:gpt-4o", "anthropic:claude-3-haiku"]}
"""
YAML = {"content-type": "application/yaml"}
Client = tuple[httpx.AsyncClient, AgentService]


async def echo(ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
    ctx.events.publish("platform.test.events.echoes.created", {"from": trigger.event_type})
    return {"said": f"{ctx.config['greeting']} x{ctx.config['limit']}"}


async def put_echo(client: httpx.AsyncClient, ws: WorkspaceHandle) -> None:
    r = await client.put("/v1/agents/definitions/echo", content=ECHO_YAML, headers={**ws.headers, **YAML})
    assert r.status_code == 201, r.text


async def configure(client: httpx.AsyncClient, ws: WorkspaceHandle, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/agents/configurations", headers=ws.headers,
                          json={"definition_id": "echo", "yaml_config": "limit: 2\n", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def runs_of(client: httpx.AsyncClient, ws: WorkspaceHandle, cfg_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/agents/configurations/{cfg_id}/runs", headers=ws.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["runs"])


async def test_definition_round_trip_yaml_and_json(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, _ = agents_client
    await put_echo(client, workspace)
    got = (await client.get("/v1/agents/definitions/echo", headers=workspace.headers)).json()
    assert got["version"] == "1.0.0" and got["builtin"] is False
    assert got["inputs"]["required"] == ["limit"] and got["stack"]["models"][0] == "openai:gpt-4o"
    again = {k: v for k, v in got.items() if k != "builtin"} | {"version": "1.1.0"}
    r = await client.put("/v1/agents/definitions/echo", json=again, headers=workspace.headers)
    assert r.status_code == 200 and r.json()["version"] == "1.1.0"
    listed = (await client.get("/v1/agents/definitions", headers=workspace.headers)).json()["definitions"]
    assert "echo" in {d["id"] for d in listed}


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("id: echo\nname: E\nversion: 1\ntriggers: [{type: schedule, cron: 'every monday'}]", "triggers.0.cron"),
    ("id: echo\nname: E\nversion: 1\ntriggers: [{type: schedule, cron: '* * * * *', timezone: Mars/Base}]",
     "triggers.0.timezone"),
    ("id: echo\nname: E\nversion: 1\ntriggers: [{type: event, topic: 'Platform..x'}]", "triggers.0.topic"),
    ("id: echo\nname: E\nversion: 1\ntriggers: [{type: telepathy}]", "triggers.0"),
    ("id: echo\nname: E\nversion: 1\ninputs: {limit: {type: integr}}", "inputs.limit.type"),
    ("id: echo\nname: E\nversion: 1\nstack: {models: [gpt-4o]}", "stack.models"),
    ("id: echo\nversion: 1", "name"),
    ("id: other\nname: E\nversion: 1", "id"),
    ("id: echo\nname: E\nversion: 1\nmemory: {type: vector}", "memory.namespace_template"),
    ("[not, a, mapping]", "body"),
    ("id: echo\nname: [unclosed", "body"),
])
async def test_bad_definitions_are_400_naming_the_field(
    agents_client: Client, workspace: WorkspaceHandle, yaml_text: str, field: str
) -> None:
    client, _ = agents_client
    r = await client.put("/v1/agents/definitions/echo", content=yaml_text, headers={**workspace.headers, **YAML})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field, r.json()


@pytest.mark.parametrize(("yaml_config", "field"), [
    ("greeting: hi\n", "yaml_config.limit"),  # required
    ("limit: zero\n", "yaml_config.limit"),  # type
    ("limit: 0\n", "yaml_config.limit"),  # minimum
    ("limit: 1\ncolour: red\n", "yaml_config.colour"),  # unknown input
    ("- a list\n", "yaml_config"),
    ("limit: [1\n", "yaml_config"),
])
async def test_configuration_values_are_validated_against_inputs(
    agents_client: Client, workspace: WorkspaceHandle, yaml_config: str, field: str
) -> None:
    client, _ = agents_client
    await put_echo(client, workspace)
    r = await client.post("/v1/agents/configurations", headers=workspace.headers,
                          json={"definition_id": "echo", "yaml_config": yaml_config})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field


async def test_configuration_lifecycle_and_namespace(
    agents_client: Client, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle
) -> None:
    client, _ = agents_client
    await put_echo(client, workspace)
    cfg = await configure(client, workspace, name="Echo for ACME")
    assert cfg["effective_config"] == {"greeting": "hello", "limit": 2}
    assert cfg["external_memory_namespace"] == f"echo_{cfg['id']}" and cfg["status"] == "active"
    r = await client.patch(f"/v1/agents/configurations/{cfg['id']}", headers=workspace.headers,
                           json={"yaml_config": {"limit": 5, "greeting": "hey"}})
    assert r.status_code == 200 and r.json()["effective_config"] == {"limit": 5, "greeting": "hey"}
    r = await client.patch(f"/v1/agents/configurations/{cfg['id']}", headers=workspace.headers,
                           json={"yaml_config": {"limit": -1}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "yaml_config.limit"
    # another workspace sees none of it
    r = await client.get(f"/v1/agents/configurations/{cfg['id']}", headers=other_workspace.headers)
    assert r.status_code == 404
    assert (await client.get("/v1/agents/definitions/echo", headers=other_workspace.headers)).status_code == 404
    r = await client.post("/v1/agents/configurations", headers=other_workspace.headers,
                          json={"definition_id": "echo", "yaml_config": "limit: 1"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "definition_id"
    listed = (await client.get("/v1/agents/configurations", headers=workspace.headers)).json()["configurations"]
    assert [c["id"] for c in listed] == [cfg["id"]]
    assert (await client.delete(f"/v1/agents/configurations/{cfg['id']}", headers=workspace.headers)).status_code == 204
    assert (await client.get(f"/v1/agents/configurations/{cfg['id']}", headers=workspace.headers)).status_code == 404


async def test_namespace_template_errors_name_the_template(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, _ = agents_client
    field = "memory.namespace_template"
    for template in ("x_{{shop_id}}", "brand_{{brand_id}}", "UPPER CASE {{instance_id}}"):
        doc = ECHO_YAML.replace('"echo_{{instance_id}}"', repr(template))
        assert (await client.put("/v1/agents/definitions/echo", content=doc,
                                 headers={**workspace.headers, **YAML})).status_code in (200, 201)
        r = await client.post("/v1/agents/configurations", headers=workspace.headers,
                              json={"definition_id": "echo", "yaml_config": "limit: 1"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"] == field and template in r.json()["error"]["message"]


async def test_event_trigger_runs_once_per_event(agents_client: Client, workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    agent = FunctionAgent(echo)
    service.registry.add_implementation("echo", lambda: agent)
    r = await client.post("/v1/events", headers=workspace.headers,
                          json={"type": "platform.test.events.things.created", "data": {"n": 0}})
    assert r.status_code == 202  # before the configuration existed: must not trigger it
    await put_echo(client, workspace)
    cfg = await configure(client, workspace)
    r = await client.post("/v1/events", headers=workspace.headers,
                          json={"type": "platform.test.events.things.created", "data": {"n": 1}})
    event_id = r.json()["id"]
    runs = await poll(lambda: _finished(client, workspace, cfg["id"], 1), what="the event's run")
    assert runs[0]["status"] == "succeeded" and runs[0]["trigger_event_id"] == event_id
    assert runs[0]["trigger"]["type"] == "event" and runs[0]["output"] == {"said": "hello x2"}
    assert runs[0]["duration_ms"] is not None and runs[0]["attempts"] == 1
    # the agent's own event was published, and did not trigger anything more
    events = (await client.get("/v1/events?topic=platform.test.events.echoes.created", headers=workspace.headers))
    assert [e["data"] for e in events.json()["events"]] == [{"from": "platform.test.events.things.created"}]
    assert events.json()["events"][0]["source"] == f"ionflux.agents/{cfg['id']}"
    # a redelivery of the same event (the bus is at-least-once) to both matching consumers records no more runs
    async with service.platform.db.tenant(workspace.id) as session:
        stored, _ = await list_events(session, pattern="platform.test.events.things.created")
    event = next(e for e in stored if e.id == event_id)
    matching = [s for s in service.platform.bus.subscriptions() if s.matches(event.type)]
    assert len(matching) == 2  # two trigger patterns of the definition match: still one run
    for sub in matching:
        async with service.platform.db.tenant(workspace.id) as session:
            await sub.handler(event, session)
    await service.executor.run_due()
    assert len(await runs_of(client, workspace, cfg["id"])) == 1
    assert len(agent.calls) == 1


async def _finished(client: httpx.AsyncClient, ws: WorkspaceHandle, cfg_id: str, n: int) -> list[dict[str, Any]]:
    runs = await runs_of(client, ws, cfg_id)
    done = [r for r in runs if r["status"] in ("succeeded", "failed", "skipped")]
    return runs if len(done) >= n else []
