"""Running an agent in its own process: the same `AgentContext` as in IONFLUX, built over HTTP.

```python
async with IonfluxClient("http://127.0.0.1:8080", token) as ionflux:
    output = await run_agent(ionflux, MyAgent(), configuration_id, Trigger(type="manual"))
```
Its events and state writes are sent when the agent returns (a failed run leaves no trace).
"""

from __future__ import annotations

from typing import Any

from ionflux.agents.context import AgentContext, AgentImplementation, Trigger, Unavailable
from ionflux.agents.definitions import parse_definition
from ionflux.client.http import IonfluxClient
from ionflux.client.services import HttpEmail, HttpEvents, HttpLLM, HttpMemory, HttpShopify, HttpState, HttpWhatsApp
from ionflux.core.models import new_id


async def agent_context(client: IonfluxClient, configuration_id: str, *, run_id: str | None = None,
                        shopify_connection_id: str | None = None) -> AgentContext:
    cfg = await client.agents.configuration(configuration_id)
    definition = parse_definition({k: v for k, v in (await client.agents.definition(cfg["definition_id"])).items()
                                   if k != "builtin"})
    return AgentContext(
        workspace_id=await client.workspace_id(), configuration_id=configuration_id, run_id=run_id or new_id(),
        definition=definition, config=dict(cfg["effective_config"]),
        llm=HttpLLM(client, definition.default_model), email=HttpEmail(client), whatsapp=HttpWhatsApp(client),
        memory=HttpMemory(client, cfg["external_memory_namespace"]) if cfg.get("external_memory_namespace")
        else Unavailable("memory (this definition declares none)"),
        shopify=HttpShopify(client, shopify_connection_id), events=HttpEvents(client),
        state=HttpState(client, configuration_id),
    )


async def run_agent(client: IonfluxClient, agent: AgentImplementation, configuration_id: str,
                    trigger: Trigger, **options: Any) -> dict[str, Any]:
    """Run `agent` here for a configuration stored in IONFLUX; publish its events and state on success."""
    ctx = await agent_context(client, configuration_id, **options)
    output = await agent.run(ctx, trigger)
    assert isinstance(ctx.state, HttpState) and isinstance(ctx.events, HttpEvents)
    await ctx.state.flush()
    await ctx.events.flush()
    return output
