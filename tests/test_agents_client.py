"""`ionflux.client` against a real `ionflux serve` process: agents managed over HTTP, errors as exceptions,
and an agent running in this (separate) process with the same AgentContext."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ionflux.agents.context import AgentContext, Trigger
from ionflux.agents.ports import MemoryItem
from ionflux.client import IonfluxClient, agent_context, run_agent
from ionflux.core.errors import AuthFailed, Conflict, InvalidRequest, NotFound

from .server import ServerProcess

ADMIN = "client-test-admin-token"
NOTES_YAML = """
id: notes
name: Notes
version: "2"
triggers: [{type: event, topic: platform.notes.events.notes.requested}]
inputs:
  prefix: {type: string, default: "note"}
  max_notes: {type: integer, minimum: 1, required: true}
memory: {type: vector, namespace_template: "notes_{{instance_id}}"}
"""
DIM = 384  # the memory service's default namespace dimension


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    workdir = tmp_path_factory.mktemp("client")
    env = {"IONFLUX_DATA_DIR": str(workdir / "data"), "IONFLUX_DATABASE_URL": "", "IONFLUX_BUS_URL": "embedded://",
           "IONFLUX_ADMIN_TOKEN": ADMIN, "IONFLUX_LOG_LEVEL": "WARNING", "IONFLUX_RELAY_POLL_SECONDS": "0.05",
           "IONFLUX_AGENTS_RUNNER_POLL_SECONDS": "0.05", "IONFLUX_AGENTS_RETRY_BASE_SECONDS": "0"}
    proc = ServerProcess(env, workdir)
    proc.start(timeout=60)
    try:
        r = httpx.post(f"{proc.url}/v1/workspaces", json={"name": "client"},
                       headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
        r.raise_for_status()
        yield proc, str(r.json()["token"])
    finally:
        proc.stop()


class NoteTaker:
    async def run(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        taken = await ctx.state.items("note:")
        if len(taken) >= ctx.config["max_notes"]:
            return {"taken": len(taken), "full": True}
        key = f"note:{len(taken) + 1}"
        ctx.state.put(key, {"text": f"{ctx.config['prefix']} {trigger.input.get('text')}"})
        axis = [0.0] * DIM
        axis[len(taken)] = 1.0
        await ctx.memory.upsert([MemoryItem(id=key, values=axis, metadata={"text": str(trigger.input.get("text"))})])
        ctx.events.publish("platform.notes.events.notes.taken", {"key": key}, subject=ctx.configuration_id)
        return {"taken": len(taken) + 1, "full": False}


async def test_client_manages_agents_and_runs_one_out_of_process(server: tuple[ServerProcess, str]) -> None:
    proc, token = server
    async with IonfluxClient(proc.url, token) as ionflux:
        stored = await ionflux.agents.put_definition(NOTES_YAML)
        assert stored["id"] == "notes" and stored["version"] == "2"
        assert "notes" in {d["id"] for d in await ionflux.agents.definitions()}
        with pytest.raises(InvalidRequest) as bad:
            await ionflux.agents.configure("notes", "max_notes: 0")
        assert bad.value.field == "yaml_config.max_notes"
        with pytest.raises(NotFound):
            await ionflux.agents.configure("missing", {})
        cfg = await ionflux.agents.configure("notes", {"max_notes": 2}, name="Two notes")
        assert cfg["effective_config"] == {"prefix": "note", "max_notes": 2}

        # the agent runs here; its state and events go through the HTTP API
        for text in ("one", "two", "three"):
            out = await run_agent(ionflux, NoteTaker(), cfg["id"], Trigger(type="manual", input={"text": text}))
        assert out == {"taken": 2, "full": True}
        assert [v["text"] for _, v in await ionflux.agents.state(cfg["id"], "note:")] == ["note one", "note two"]
        # the configuration's own memory namespace, over HTTP
        ctx = await agent_context(ionflux, cfg["id"])
        assert ctx.memory.namespace == cfg["external_memory_namespace"] == f"notes_{cfg['id']}"
        probe = [0.0] * DIM
        probe[1] = 1.0
        nearest = await ctx.memory.query(vector=probe, top_k=1)
        assert [(m.id, m.metadata["text"]) for m in nearest] == [("note:2", "two")]
        assert set(await ctx.memory.fetch(["note:1", "missing"])) == {"note:1"}
        events, _ = await ionflux.events.list("platform.notes.events.notes.taken")
        assert [e["data"]["key"] for e in events] == ["note:1", "note:2"]

        # inside IONFLUX no implementation of `notes` is installed: the run log says so, and the breaker trips
        run = await ionflux.agents.run(cfg["id"], {"text": "x"})
        assert run["status"] == "failed" and "no implementation" in run["error"] and run["attempts"] == 3
        assert (await ionflux.agents.configuration(cfg["id"]))["status"] == "paused"
        with pytest.raises(Conflict):
            await ionflux.agents.run(cfg["id"])
        assert [r["status"] for r in await ionflux.agents.runs(cfg["id"])] == ["failed"]
        resumed = await ionflux.agents.update(cfg["id"], status="active")
        assert resumed["status"] == "active"
        await ionflux.agents.delete(cfg["id"])
        with pytest.raises(NotFound):
            await ionflux.agents.configuration(cfg["id"])

    async with IonfluxClient(proc.url, "ifx_wrong") as stranger:
        with pytest.raises(AuthFailed):
            await stranger.agents.definitions()

