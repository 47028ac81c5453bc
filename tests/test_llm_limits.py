"""Budgets and per-minute limits hold exactly under 50 concurrent requests; usage is recorded and reported
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ionflux.core.platform import Platform
from ionflux.sandbox.llm_common import count_tokens
from tests.conftest import ADMIN_TOKEN, WorkspaceHandle
from tests.llm_helpers import PRICES, LLMApp, Sims, llm_app, llm_sims, module_llm_sims, reset, running_sims  # noqa: F401 - shared fixtures

N = 50


@pytest.fixture
async def llm(platform: Platform, sims: Sims, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LLMApp]:
    async with llm_app(platform, sims, monkeypatch) as app:
        yield app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def set_limits(llm: LLMApp, ws: WorkspaceHandle, **limits: Any) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Ionflux-Workspace": ws.id}
    r = await llm.client.put("/v1/llm/limits", headers=admin, json=limits)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def burst(llm: LLMApp, ws: WorkspaceHandle, n: int = N, **body: Any) -> list[dict[str, Any]]:
    async def one(i: int) -> dict[str, Any]:
        r = await llm.client.post("/v1/llm/requests", headers=ws.headers, json={
            "model": "openai:gpt-4o", "prompt": "hello", "parameters": {"max_tokens": 10}, "user_id": f"u{i % 2}",
            **body})
        return dict(r.json())
    return await asyncio.gather(*(one(i) for i in range(n)))


def cost_of_one() -> float:
    price = PRICES["openai:gpt-4o"]
    prompt, completion = count_tokens("hello") + 4, count_tokens("Echo: hello")
    return (prompt * price["input"] + completion * price["output"]) / 1_000_000


async def test_budget_is_never_exceeded_by_50_concurrent_requests(llm: LLMApp, sims: Sims, workspace) -> None:
    budget = 0.001  # a naive check-then-spend would let all 50 through: 50 x $0.0000425 = $0.002125
    sims.openai_server.faults.latency = 0.02  # keep them in flight together
    await set_limits(llm, workspace, budget_usd=budget)
    results = await burst(llm, workspace)
    ok = [r for r in results if r["status"] == "success"]
    refused = [r for r in results if r["status"] == "error"]
    assert {r["error"]["code"] for r in refused} == {"QUOTA_EXCEEDED"}
    assert len(ok) >= 7  # each holds at most $0.0001325 (prompt bound + max_tokens) while in flight
    spent = len(ok) * cost_of_one()
    assert spent <= budget
    state = (await llm.client.get("/v1/llm/limits", headers=workspace.headers)).json()
    assert state["spent_usd"] == pytest.approx(spent) and state["reserved_usd"] == 0
    usage = (await llm.client.get("/v1/llm/usage", headers=workspace.headers)).json()
    assert usage["totals"]["cost_usd"] == pytest.approx(spent)
    assert usage["totals"]["requests"] == N and usage["totals"]["errors"] == len(refused)
    # Another process (or a restart) starts from the recorded spending.
    llm.service.orchestrator.ledger.forget(workspace.id)
    again = (await llm.client.get("/v1/llm/limits", headers=workspace.headers)).json()
    assert again["spent_usd"] == pytest.approx(spent)


async def test_a_new_budget_period_starts_with_nothing_spent(llm: LLMApp, workspace) -> None:
    wall = Clock()
    wall.now = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC).timestamp()
    llm.service.orchestrator.ledger.wall = wall
    await set_limits(llm, workspace, budget_usd=0.0003)  # one request holds up to $0.0001325 and spends $0.0000425
    codes = []
    for _ in range(10):
        codes.append((await burst(llm, workspace, 1))[0].get("error", {}).get("code", "ok"))
        if codes[-1] != "ok":
            break
    assert codes[-1] == "QUOTA_EXCEEDED" and len(codes) > 2
    state = (await llm.client.get("/v1/llm/limits", headers=workspace.headers)).json()
    assert state["period_start"] == "2026-11-01T00:00:00+00:00"
    wall.now += 2  # December
    assert (await burst(llm, workspace, 1))[0]["status"] == "success"
    state = (await llm.client.get("/v1/llm/limits", headers=workspace.headers)).json()
    assert state["period_start"] == "2026-12-01T00:00:00+00:00" and state["spent_usd"] == pytest.approx(cost_of_one())


async def test_rpm_admits_exactly_the_limit_then_the_window_slides(llm: LLMApp, workspace) -> None:
    clock = Clock()
    llm.service.orchestrator.ledger.clock = clock
    await set_limits(llm, workspace, rpm=10)
    results = await burst(llm, workspace)
    assert sum(r["status"] == "success" for r in results) == 10
    limited = [r for r in results if r["status"] == "error"]
    assert {r["error"]["code"] for r in limited} == {"RATE_LIMITED"} and len(limited) == N - 10
    assert limited[0]["error"]["retry_after"] == 60
    clock.now += 60.5
    assert sum(r["status"] == "success" for r in await burst(llm, workspace, 12)) == 10


async def test_tpm_counts_the_token_bound_then_settles_to_usage(llm: LLMApp, workspace) -> None:
    clock = Clock()
    llm.service.orchestrator.ledger.clock = clock
    bound = len(b"hello") + 8 + 10  # prompt bound + max_tokens
    await set_limits(llm, workspace, tpm=3 * bound)
    results = await burst(llm, workspace)
    ok = sum(r["status"] == "success" for r in results)
    assert ok >= 3
    used = ok * (count_tokens("hello") + 4 + count_tokens("Echo: hello"))
    assert used <= 3 * bound
    too_big = await burst(llm, workspace, 1, parameters={"max_tokens": 1000})
    assert too_big[0]["error"]["code"] == "RATE_LIMITED" and too_big[0]["error"]["field"] == "parameters.max_tokens"


async def test_usage_by_model_and_user_and_tenancy(llm: LLMApp, workspace, other_workspace) -> None:
    await burst(llm, workspace, 4)
    await burst(llm, workspace, 2, model="anthropic:claude-3-haiku")
    by_model = (await llm.client.get("/v1/llm/usage?group_by=model", headers=workspace.headers)).json()
    assert [(g["model"], g["requests"]) for g in by_model["groups"]] == [("anthropic:claude-3-haiku", 2),
                                                                          ("openai:gpt-4o", 4)]
    haiku = PRICES["anthropic:claude-3-haiku"]
    assert by_model["groups"][0]["cost_usd"] == pytest.approx(
        2 * ((count_tokens("hello") + 4) * haiku["input"] + count_tokens("Echo: hello") * haiku["output"]) / 1e6)
    by_user = (await llm.client.get("/v1/llm/usage", params={"group_by": "user"}, headers=workspace.headers)).json()
    assert [(g["user"], g["requests"]) for g in by_user["groups"]] == [("u0", 3), ("u1", 3)]
    future = (await llm.client.get("/v1/llm/usage", params={"since": "2999-01-01T00:00:00Z"},
                                   headers=workspace.headers)).json()
    assert future["groups"] == []
    assert (await llm.client.get("/v1/llm/usage", headers=other_workspace.headers)).json()["groups"] == []
    bad = await llm.client.get("/v1/llm/usage", params={"group_by": "planet"}, headers=workspace.headers)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "group_by"
    assert (await llm.client.put("/v1/llm/limits", headers=workspace.headers, json={"rpm": 1})).status_code == 401
