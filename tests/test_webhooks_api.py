"""Operating the webhook inbox: list deliveries, replay one, read the counters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from ionflux.core.platform import Platform

from .conftest import WorkspaceHandle
from .polling import until
from .webhook_helpers import SHOP, Hooks, open_hooks, shopify_headers


@pytest.fixture
async def hooks(platform: Platform, workspace: WorkspaceHandle) -> AsyncIterator[Hooks]:
    async with open_hooks(platform, workspace.id) as h:
        yield h


async def _send(hooks: Hooks, n: int, *, topic: str = "orders/create", secret: str | None = None) -> int:
    body = json.dumps({"id": n, "total_price": "10.00"}).encode()
    headers = shopify_headers(body, topic=topic, event_id=f"ev-{n}", webhook_id=f"wh-{n}",
                              **({"secret": secret} if secret else {}))
    return (await hooks.client.post("/webhooks/shopify", content=body, headers=headers)).status_code


async def test_deliveries_are_listed_newest_first_filtered_and_paginated(
    hooks: Hooks, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle
) -> None:
    await hooks.connect("shopify", SHOP)
    for n in range(5):
        assert await _send(hooks, n) == 200
    assert await _send(hooks, 0) == 200  # a duplicate
    await hooks.settle(5)
    get = hooks.client.get
    page = (await get("/v1/webhooks/deliveries", params={"limit": 2}, headers=workspace.headers)).json()
    seen = [d["delivery_id"] for d in page["deliveries"]]
    while page["next_cursor"]:
        page = (await get("/v1/webhooks/deliveries", params={"limit": 2, "cursor": page["next_cursor"]},
                          headers=workspace.headers)).json()
        seen += [d["delivery_id"] for d in page["deliveries"]]
    assert len(seen) == 6 and seen[0] == "wh-0" and set(seen) == {f"wh-{n}" for n in range(5)}

    published = (await get("/v1/webhooks/deliveries", params={"status": "published"},
                           headers=workspace.headers)).json()["deliveries"]
    assert len(published) == 5 and all(d["event_type"] == "platform.shopify.events.orders.created"
                                       for d in published)
    [dup] = (await get("/v1/webhooks/deliveries", params={"status": "duplicate"},
                       headers=workspace.headers)).json()["deliveries"]
    assert dup["duplicate_of"] == next(d["id"] for d in published if d["delivery_id"] == "wh-0")
    assert (await get("/v1/webhooks/deliveries", params={"status": "received"},
                      headers=workspace.headers)).json()["deliveries"] == []
    assert (await get("/v1/webhooks/deliveries", params={"provider": "stripe"},
                      headers=workspace.headers)).json()["deliveries"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await get("/v1/webhooks/deliveries", params={"since": future},
                      headers=workspace.headers)).json()["deliveries"] == []
    assert len((await get("/v1/webhooks/deliveries", params={"until": future},
                          headers=workspace.headers)).json()["deliveries"]) == 6
    body = (await get("/v1/webhooks/deliveries", params={"include_body": "true", "status": "published"},
                      headers=workspace.headers)).json()["deliveries"][0]
    assert json.loads(body["body"])["id"] == 4
    assert body["headers"]["x-shopify-topic"] == "orders/create"
    assert "x-shopify-hmac-sha256" not in {k.lower() for k in body["headers"]}

    theirs = await get("/v1/webhooks/deliveries", headers=other_workspace.headers)
    assert theirs.status_code == 200 and theirs.json()["deliveries"] == []
    one = published[0]["id"]
    assert (await get(f"/v1/webhooks/deliveries/{one}", headers=other_workspace.headers)).status_code == 404
    assert (await get(f"/v1/webhooks/deliveries/{one}", headers=workspace.headers)).json()["status"] == "published"
    assert (await get("/v1/webhooks/deliveries", params={"cursor": "garbage"},
                      headers=workspace.headers)).status_code == 400
    assert (await get("/v1/webhooks/deliveries")).status_code == 401


async def test_replay_publishes_again_under_a_new_event_id_that_names_the_original(
    hooks: Hooks, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle
) -> None:
    await hooks.connect("shopify", SHOP)
    assert await _send(hooks, 7) == 200
    await hooks.settle(1)
    [original] = await hooks.inbox()
    assert (await hooks.client.post(f"/v1/webhooks/deliveries/{original.id}/replay",
                                    headers=other_workspace.headers)).status_code == 404
    response = await hooks.client.post(f"/v1/webhooks/deliveries/{original.id}/replay", headers=workspace.headers)
    assert response.status_code == 202, response.text
    replay = response.json()
    assert replay["replay_of"] == original.id and replay["event_id"] != original.event_id
    await hooks.settle(2)
    first, again = hooks.delivered_of("platform.shopify.events.orders.created")
    assert again.id == replay["event_id"]
    assert again.data["replay_of"] == {"webhook_delivery_id": original.id, "event_id": first.id}
    assert again.data["payload"] == first.data["payload"]
    listed = (await hooks.client.get(f"/v1/webhooks/deliveries/{replay['id']}", headers=workspace.headers)).json()
    assert listed["replay_of"] == original.id and listed["status"] == "published"
    assert (await hooks.client.post("/v1/webhooks/deliveries/nope/replay",
                                    headers=workspace.headers)).status_code == 404


async def test_metrics_count_received_rejected_duplicates_and_latency(hooks: Hooks) -> None:
    await hooks.connect("shopify", SHOP)
    assert await _send(hooks, 1) == 200
    assert await _send(hooks, 1) == 200
    assert await _send(hooks, 2, secret="shpss_forged") == 401
    assert (await hooks.client.post("/webhooks/unknown", content=b"{}")).status_code == 404

    async def counted() -> bool:
        text = (await hooks.client.get("/metrics")).text
        return all(line in text for line in (
            'ionflux_webhooks_received_total{provider="shopify"} 1.0',
            'ionflux_webhooks_duplicates_total{provider="shopify"} 1.0',
            'ionflux_webhooks_rejected_total{provider="shopify",reason="signature"} 1.0',
            'ionflux_webhooks_rejected_total{provider="unknown",reason="unknown_provider"} 1.0',
            'ionflux_webhooks_ack_seconds_count{provider="shopify"} 2.0',
        ))
    await until(counted)
