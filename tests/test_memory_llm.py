"""Integration: `text` items are embedded by the real LLM service (local all-MiniLM-L6-v2, 384
dimensions), found through `platform.services["llm"]` at call time."""

from __future__ import annotations

import httpx
import pytest

from .conftest import WorkspaceHandle

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NS = "/v1/memory/namespaces"


async def test_text_memory_through_the_real_llm_service(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    h = workspace.headers
    assert (await client.post(NS, json={"name": "persona"}, headers=h)).json()["dimension"] == 384  # the default
    notes = {"cat": "The cat sat on the mat.", "revenue": "Quarterly revenue grew by 12 percent.",
             "refund": "The customer asked for a refund of the damaged order."}
    up = await client.put(f"{NS}/persona/vectors", headers=h,
                          json={"vectors": [{"id": k, "text": t, "metadata": {"text": t}} for k, t in notes.items()]})
    assert up.status_code == 200, up.text
    for question, expected in [("A kitten rested on the rug.", "cat"), ("How did sales do this quarter?", "revenue"),
                               ("Money back for a broken parcel", "refund")]:
        hits = (await client.post(f"{NS}/persona/query", json={"text": question, "top_k": 3}, headers=h)).json()
        assert hits["matches"][0]["id"] == expected, (question, hits)
        assert hits["matches"][0]["score"] > hits["matches"][1]["score"]
    await client.post(NS, json={"name": "wide", "dimension": 1536}, headers=h)
    mismatch = await client.put(f"{NS}/wide/vectors", headers=h, json={"vectors": [{"id": "a", "text": "hello"}]})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["field"] == "vectors[0].text"
