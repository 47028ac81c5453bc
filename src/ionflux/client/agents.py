"""The agent bridge over HTTP: definitions, configurations, runs and per-configuration state."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from ionflux.client.http import IonfluxClient


class AgentsApi:
    def __init__(self, client: IonfluxClient) -> None:
        self._c = client

    async def put_definition(self, definition: str | dict[str, Any],
                             definition_id: str | None = None) -> dict[str, Any]:
        """Store a blueprint given as YAML text or a mapping (its `id` names it unless `definition_id` does)."""
        if isinstance(definition, str):
            if definition_id is None:
                import yaml

                definition_id = str((yaml.safe_load(definition) or {}).get("id", ""))
            return dict(await self._c.request("PUT", f"/v1/agents/definitions/{quote(definition_id)}",
                                              content=definition.encode(),
                                              headers={"content-type": "application/yaml"}))
        definition_id = definition_id or str(definition.get("id", ""))
        return dict(await self._c.request("PUT", f"/v1/agents/definitions/{quote(definition_id)}",
                                          content=json.dumps(definition).encode(),
                                          headers={"content-type": "application/json"}))

    async def definition(self, definition_id: str) -> dict[str, Any]:
        return dict(await self._c.request("GET", f"/v1/agents/definitions/{quote(definition_id)}"))

    async def definitions(self) -> list[dict[str, Any]]:
        return list((await self._c.request("GET", "/v1/agents/definitions"))["definitions"])

    async def configure(self, definition_id: str, yaml_config: str | dict[str, Any] | None = None, *,
                        name: str | None = None, brand_id: str | None = None) -> dict[str, Any]:
        body = {"definition_id": definition_id, "yaml_config": yaml_config, "name": name, "brand_id": brand_id}
        return dict(await self._c.request("POST", "/v1/agents/configurations",
                                          json={k: v for k, v in body.items() if v is not None}))

    async def configuration(self, configuration_id: str) -> dict[str, Any]:
        return dict(await self._c.request("GET", f"/v1/agents/configurations/{quote(configuration_id)}"))

    async def configurations(self, *, definition_id: str | None = None, status: str | None = None
                             ) -> list[dict[str, Any]]:
        page = await self._c.request("GET", "/v1/agents/configurations",
                                     params={"definition_id": definition_id, "status": status})
        return list(page["configurations"])

    async def update(self, configuration_id: str, **changes: Any) -> dict[str, Any]:
        """PATCH `name`, `yaml_config` or `status` ("active" resumes a paused configuration)."""
        return dict(await self._c.request("PATCH", f"/v1/agents/configurations/{quote(configuration_id)}",
                                          json=changes))

    async def delete(self, configuration_id: str) -> None:
        await self._c.request("DELETE", f"/v1/agents/configurations/{quote(configuration_id)}")

    async def run(self, configuration_id: str, input: dict[str, Any] | None = None, *, wait: bool = True,
                  idempotency_key: str | None = None) -> dict[str, Any]:
        """Run now (once per idempotency key); with `wait`, the finished run (the AgentRunLog entry)."""
        body: dict[str, Any] = {"input": input or {}}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        return dict(await self._c.request("POST", f"/v1/agents/configurations/{quote(configuration_id)}/run",
                                          json=body, params={"wait": "true" if wait else "false"}))

    async def runs(self, configuration_id: str, *, status: str | None = None, limit: int = 50
                   ) -> list[dict[str, Any]]:
        page = await self._c.request("GET", f"/v1/agents/configurations/{quote(configuration_id)}/runs",
                                     params={"status": status, "limit": limit})
        return list(page["runs"])

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(await self._c.request("GET", f"/v1/agents/runs/{quote(run_id)}"))

    async def state(self, configuration_id: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        page = await self._c.request("GET", f"/v1/agents/configurations/{quote(configuration_id)}/state",
                                     params={"prefix": prefix})
        return [(item["key"], item["value"]) for item in page["items"]]

    async def put_state(self, configuration_id: str, key: str, value: dict[str, Any]) -> None:
        await self._c.request("PUT", f"/v1/agents/configurations/{quote(configuration_id)}/state/{quote(key, safe='')}",
                              json={"value": value})

    async def delete_state(self, configuration_id: str, key: str) -> None:
        await self._c.request("DELETE",
                              f"/v1/agents/configurations/{quote(configuration_id)}/state/{quote(key, safe='')}")
