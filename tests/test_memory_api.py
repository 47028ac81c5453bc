"""The memory HTTP API: namespaces (names and templates), validation that names the bad field, and
tenancy: workspace B never reaches A's memory through any endpoint, even with the same namespace name."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from ionflux.core.platform import Platform

from .conftest import WorkspaceHandle
from .memory_helpers import DIM, HashEmbedder, unit

NS = "/v1/memory/namespaces"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def embedder(client: httpx.AsyncClient, platform: Platform) -> HashEmbedder:
    fake = HashEmbedder()
    platform.services["llm"] = fake  # type: ignore[assignment]  # looked up per call, after the app is built
    return fake


async def _create(client: httpx.AsyncClient, ws: WorkspaceHandle, name: str = "notes", **extra: Any) -> httpx.Response:
    return await client.post(NS, json={"name": name, "dimension": DIM, **extra}, headers=ws.headers)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_namespace_lifecycle(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    created = await _create(client, workspace)
    assert created.status_code == 201
    assert created.json() == {"name": "notes", "dimension": DIM, "metric": "cosine", "backend": "embedded",
                              "count": 0, "embedding_model": None}
    assert (await _create(client, workspace)).status_code == 200  # idempotent
    assert _error(await _create(client, workspace, dimension=8), 409)["field"] == "name"
    listed = await client.get(NS, headers=workspace.headers)
    assert [n["name"] for n in listed.json()["namespaces"]] == ["notes"]
    assert (await client.delete(f"{NS}/notes", headers=workspace.headers)).status_code == 204
    assert _error(await client.get(f"{NS}/notes", headers=workspace.headers), 404)["field"] == "namespace"


async def test_templates_resolve_strictly(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    ok = await client.post(NS, headers=workspace.headers, json={
        "template": "emailwizard_instance_{{instance_id}}", "variables": {"instance_id": "42"}, "dimension": DIM})
    assert ok.status_code == 201 and ok.json()["name"] == "emailwizard_instance_42"
    blueprint = await client.post(NS, headers=workspace.headers, json={
        "template": "agent001_memory_for_workspace_{{workspace_id}}", "variables": {}, "dimension": DIM})
    assert blueprint.status_code == 201, blueprint.text
    assert blueprint.json()["name"] == f"agent001_memory_for_workspace_{workspace.id}"
    cases = [
        ({"template": "agent_{{agent_id}}", "variables": {"instance_id": "1"}}, "unknown variable"),
        ({"template": "agent_{{agent_id}}", "variables": {"agent_id": ""}}, "empty"),
        ({"template": "Agent_{{agent_id}}", "variables": {"agent_id": "x"}}, "not 1-64 characters"),
        ({"template": "a_{{agent_id}}", "variables": {"agent_id": "x/../y"}}, "not 1-64 characters"),
        ({"template": "agent001_memory_for_workspace_{{workspace_id}}_{{agent_id}}",
          "variables": {"agent_id": "a-long-agent-identifier"}}, "not 1-64 characters"),
        ({"template": "agent_{{agent_id}", "variables": {"agent_id": "x"}}, "malformed placeholder"),
    ]
    for body, expected in cases:
        error = _error(await client.post(NS, json={**body, "dimension": DIM}, headers=workspace.headers), 400)
        assert error["field"] == "template" and expected in error["message"], error
        assert body["template"] in error["message"]  # the error names the template
    spoof = await client.post(NS, headers=workspace.headers, json={
        "template": "m_{{workspace_id}}", "variables": {"workspace_id": "someone-else"}})
    assert _error(spoof, 400)["field"] == "variables"


async def test_bad_input_is_a_400_naming_the_field(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, embedder: HashEmbedder
) -> None:
    await _create(client, workspace)
    rng = np.random.default_rng(0)
    url = f"{NS}/notes"
    h = workspace.headers

    u = unit(rng)

    async def bad(method: str, path: str, body: dict[str, Any]) -> str:
        response = await client.request(method, url + path, json=body, headers=h)
        return str(_error(response, 400).get("field"))

    assert await bad("PUT", "/vectors", {"vectors": [{"id": "a", "values": u},
                                                          {"id": "b", "values": [1.0, 2.0]}]}) == "vectors[1].values"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": str(i), "values": u}
                                                          for i in range(1001)]}) == "vectors"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": "a", "values": u,
                                                           "metadata": {"k": None}}]}) == "vectors[0].metadata.k"
    nested = {"vectors": [{"id": "a", "values": u, "metadata": {"k": {"nested": 1}}}]}
    assert await bad("PUT", "/vectors", nested) == "vectors[0].metadata.k"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": "a", "values": u, "text": "x"}]}) == "vectors[0]"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": "", "values": u}]}) == "vectors[0].id"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": "a", "values": u},
                                                          {"id": "a", "values": u}]}) == "vectors[1].id"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": "a", "values": ["1"] * DIM}]}) == "vectors[0].values"
    assert await bad("PUT", "/vectors", {"vectors": [{"id": "a", "values": [0.0] * DIM}]}) == "vectors[0].values"
    assert await bad("POST", "/query", {"vector": [1.0] * 3}) == "vector"
    assert await bad("POST", "/query", {"vector": u, "text": "x"}) == "vector"
    assert await bad("POST", "/query", {"vector": u, "top_k": 0}) == "top_k"
    assert await bad("POST", "/query", {"vector": u, "filter": {"year": {"$gtx": 1}}}) == "filter.year.$gtx"
    assert await bad("POST", "/query", {"vector": u, "filter": {"year": {"$gt": "x"}}}) == "filter.year.$gt"
    assert await bad("POST", "/query", {"vector": u, "filter": {"$or": []}}) == "filter.$or"
    assert await bad("POST", "/query", {"vector": u, "filter": {"$not": {}}}) == "filter.$not"
    assert await bad("POST", "/query", {"vector": u, "filter": {"tags": {"$in": []}}}) == "filter.tags.$in"
    assert await bad("POST", "/query", {"vector": u, "bogus": 1}) == "bogus"
    assert await bad("POST", "/fetch", {"ids": []}) == "ids"
    assert await bad("POST", "/delete", {"ids": ["a"], "filter": {"a": 1}}) == "ids"
    assert await bad("POST", "/delete", {"filter": {}}) == "filter"
    assert _error(await client.get(f"{NS}/Bad%20Name", headers=h), 400)["field"] == "namespace"
    assert _error(await _create(client, workspace, name="x", metric="manhattan"), 400)["field"] == "metric"
    assert _error(await _create(client, workspace, name="x", dimension=0), 400)["field"] == "dimension"


async def test_text_is_embedded_through_the_llm_service(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, embedder: HashEmbedder, platform: Platform
) -> None:
    await _create(client, workspace, embedding_model="local:test-model")
    up = await client.put(f"{NS}/notes/vectors", headers=workspace.headers, json={"vectors": [
        {"id": "shoe", "text": "red running shoes", "metadata": {"kind": "product"}},
        {"id": "cake", "text": "chocolate cake recipe"}]})
    assert up.json() == {"upserted_count": 2}
    hits = await client.post(f"{NS}/notes/query", headers=workspace.headers, json={"text": "running shoes", "top_k": 1})
    assert hits.json()["matches"][0]["id"] == "shoe"
    assert embedder.calls[0] == (workspace.id, ["red running shoes", "chocolate cake recipe"], "local:test-model")
    metrics = (await client.get("/metrics")).text
    assert 'ionflux_memory_vectors_written_total{backend="embedded"} 2.0' in metrics
    assert 'ionflux_memory_operation_seconds_count{backend="embedded",operation="query"} 1.0' in metrics
    platform.services["llm"] = object()  # type: ignore[assignment]  # no embedder in this process
    error = _error(await client.post(f"{NS}/notes/query", headers=workspace.headers, json={"text": "x"}), 503)
    assert error["field"] == "text"


async def test_workspace_b_never_reaches_a_through_any_endpoint(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle,
    admin_headers: dict[str, str],
) -> None:
    a, b = workspace, other_workspace
    rng = np.random.default_rng(1)
    secret = unit(rng)
    await _create(client, a, name="shared")
    await client.put(f"{NS}/shared/vectors", headers=a.headers,
                     json={"vectors": [{"id": "a-1", "values": secret, "metadata": {"owner": "a"}}]})
    url = f"{NS}/shared"
    calls = [("GET", url, None), ("DELETE", url, None),
             ("PUT", f"{url}/vectors", {"vectors": [{"id": "a-1", "values": unit(rng)}]}),
             ("POST", f"{url}/query", {"vector": secret}), ("POST", f"{url}/query", {"id": "a-1"}),
             ("POST", f"{url}/fetch", {"ids": ["a-1"]}), ("POST", f"{url}/delete", {"ids": ["a-1"]}),
             ("POST", f"{url}/delete", {"filter": {"owner": "a"}})]
    for method, path, body in calls:  # B has no such namespace: A's is invisible
        response = await client.request(method, path, json=body, headers=b.headers)
        assert response.status_code == 404, (method, path, response.text)
    assert (await client.get(NS, headers=b.headers)).json() == {"namespaces": []}

    assert (await _create(client, b, name="shared")).status_code == 201  # B's own, same name
    for method, path, body in calls[2:]:
        response = await client.request(method, path, json=body, headers=b.headers)
        assert response.status_code in (200, 404), (method, path, response.text)  # 404: B's query by id "a-1"
    hits = (await client.post(f"{url}/query", json={"vector": secret, "top_k": 10}, headers=b.headers)).json()
    assert [m["id"] for m in hits["matches"]] == []  # B's write of a-1 was deleted by B's own delete
    assert (await client.delete(url, headers=b.headers)).status_code == 204

    fetched = (await client.post(f"{url}/fetch", json={"ids": ["a-1"]}, headers=a.headers)).json()["vectors"]
    assert [(v["id"], v["metadata"]) for v in fetched] == [("a-1", {"owner": "a"})]
    np.testing.assert_allclose(fetched[0]["values"], secret, rtol=1e-6)
    assert (await client.get(url, headers=a.headers)).json()["count"] == 1
    as_admin_for_b = await client.post(f"{url}/fetch", json={"ids": ["a-1"]},
                                       headers={**admin_headers, "X-Ionflux-Workspace": b.id})
    assert as_admin_for_b.status_code == 404
