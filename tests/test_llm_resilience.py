"""Fallback chains (429, 5xx, timeouts, streams that fail before their first token), workspace keys, and every
error code of the contract, reachable through POST /v1/llm/requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ionflux.core.platform import Platform
from ionflux.llm.models import LLMUsage
from ionflux.sandbox import Fault
from ionflux.sandbox.anthropic import anthropic_error_body
from ionflux.sandbox.openai import openai_error_body
from tests.conftest import ADMIN_TOKEN, WorkspaceHandle
from tests.llm_helpers import (  # noqa: F401 - shared fixtures
    LLMApp,
    Sims,
    llm_app,
    llm_sims,
    module_llm_sims,
    reset,
    running_sims,
    sqlite_database_url,
    sqlite_only,
)

FALLBACKS = {"openai:gpt-4o": ["anthropic:claude-3-haiku"]}
CHAT = "/v1/chat/completions"


@pytest.fixture
async def llm(platform: Platform, sims: Sims, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LLMApp]:
    async with llm_app(platform, sims, monkeypatch, IONFLUX_LLM_FALLBACKS=FALLBACKS,
                       IONFLUX_OPENAI_TIMEOUT="0.5") as app:
        yield app


async def ask(llm: LLMApp, ws: WorkspaceHandle, **body: Any) -> tuple[int, dict[str, Any]]:
    r = await llm.client.post("/v1/llm/requests", headers=ws.headers, json={"prompt": "hello", **body})
    return r.status_code, r.json()


async def usage_rows(llm: LLMApp, ws: WorkspaceHandle) -> list[LLMUsage]:
    from sqlalchemy import select

    await llm.service.orchestrator.recorder.flush()
    async with llm.platform.db.tenant(ws.id) as session:
        return list((await session.scalars(select(LLMUsage).order_by(LLMUsage.created_at))).all())


@pytest.mark.parametrize("fault", [
    Fault.respond(429, body=openai_error_body("Rate limit reached", "requests", "rate_limit_exceeded"), retry_after=1),
    Fault.respond(500, body=openai_error_body("The server had an error", "server_error")),
    Fault.timeout(3.0),
], ids=["429", "500", "timeout"])
async def test_fallback_on_429_5xx_and_timeout(llm: LLMApp, sims: Sims, workspace: WorkspaceHandle,
                                               fault: Fault) -> None:
    sims.openai_server.faults.push(fault)
    status, body = await ask(llm, workspace, model="openai:gpt-4o")
    assert status == 200, body
    assert body["provider_response"]["model_used"] == "anthropic:claude-3-haiku"
    assert len(sims.openai_server.requests) == 1 and len(sims.anthropic_server.requests) == 1
    rows = await usage_rows(llm, workspace)
    assert [(r.model, r.status, r.attempts) for r in rows] == [("anthropic:claude-3-haiku", "success", 2)]


async def test_no_fallback_on_a_request_the_provider_refuses(llm: LLMApp, sims: Sims, workspace) -> None:
    status, body = await ask(llm, workspace, model="openai:gpt-nope")
    assert status == 502 and body["error"]["code"] == "PROVIDER_API_ERROR"
    assert body["error"]["provider_error"]["status"] == 404
    assert "does not exist" in body["error"]["provider_error"]["provider_body"]
    assert sims.anthropic_server.requests == []


async def test_all_fail_reports_the_last_error_and_records_it(llm: LLMApp, sims: Sims, workspace) -> None:
    sims.openai_server.faults.push(Fault.respond(503, body=openai_error_body("busy", "server_error")))
    sims.anthropic_server.faults.push(Fault.respond(529, body=anthropic_error_body("overloaded_error", "Overloaded")))
    status, body = await ask(llm, workspace, model="openai:gpt-4o")
    assert status == 503 and body["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert body["error"]["provider_error"]["provider"] == "anthropic"
    rows = await usage_rows(llm, workspace)
    assert [(r.status, r.error_code, r.attempts) for r in rows] == [("error", "PROVIDER_UNAVAILABLE", 2)]


@pytest.mark.parametrize("failure", ["status", "cut_before_first_token"])
async def test_stream_falls_back_before_its_first_token(llm: LLMApp, sims: Sims, workspace, failure: str) -> None:
    if failure == "status":
        sims.openai_server.faults.push(Fault.respond(503, body=openai_error_body("busy", "server_error")))
    else:
        sims.openai.state.cut_stream(after_chunks=0, mode="abort")
    r = await llm.client.post(CHAT, headers=workspace.headers, json={
        "model": "openai:gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi there"}]})
    assert r.status_code == 200
    events = [line for line in r.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert '"model":"anthropic:claude-3-haiku"' in events[0]
    assert "".join(e for e in r.text.split('"content":"')[1:]).count("Echo") == 1


async def test_mid_stream_failure_ends_with_an_error_event_not_done(llm: LLMApp, sims: Sims, workspace) -> None:
    sims.openai.state.cut_stream(after_chunks=1, mode="abort")
    r = await llm.client.post(CHAT, headers=workspace.headers, json={
        "model": "openai:gpt-4o", "stream": True, "messages": [{"role": "user", "content": "a b c"}]})
    events = [line for line in r.text.split("\n\n") if line]
    assert '"error"' in events[-1] and "PROVIDER_UNAVAILABLE" in events[-1]
    assert "[DONE]" not in r.text and sims.anthropic_server.requests == []
    rows = await usage_rows(llm, workspace)
    assert rows[-1].status == "error" and rows[-1].error_code == "PROVIDER_UNAVAILABLE"


async def test_workspace_key_overrides_platform_key(llm: LLMApp, sims: Sims, workspace, other_workspace) -> None:
    sims.openai.state.keys = {"sk-platform-openai-0001", "sk-workspace-own-key-42"}
    r = await llm.client.put("/v1/credentials/openai", headers=workspace.headers,
                             json={"secrets": {"api_key": "sk-workspace-own-key-42"}})
    assert r.status_code in (200, 201), r.text
    assert (await ask(llm, workspace, model="openai:gpt-4o"))[0] == 200
    assert sims.openai_server.requests[-1].headers["authorization"] == "Bearer sk-workspace-own-key-42"
    assert (await ask(llm, other_workspace, model="openai:gpt-4o"))[0] == 200
    assert sims.openai_server.requests[-1].headers["authorization"] == "Bearer sk-platform-openai-0001"
    assert [r.key_source for r in await usage_rows(llm, workspace)] == ["workspace"]
    # A wrong workspace key is the workspace's problem: AUTH_FAILED, never a silent use of the platform key.
    await llm.client.put("/v1/credentials/openai", headers=workspace.headers,
                         json={"secrets": {"api_key": "sk-revoked-key-000"}})
    status, body = await ask(llm, workspace, model="openai:gpt-4o")
    assert status == 401 and body["error"]["code"] == "AUTH_FAILED"
    assert "sk-revoked-key-000" not in str(body)


async def test_every_error_code_is_reachable(llm: LLMApp, sims: Sims, workspace, other_workspace) -> None:
    seen: dict[str, int] = {}

    def check(status: int, body: dict[str, Any], code: str) -> None:
        assert body["status"] == "error" and body["error"]["code"] == code, body
        assert body["request_id"]
        seen[code] = status

    check(*await ask(llm, workspace, parameters={"temperature": 2.5}), "INVALID_REQUEST")
    status, body = await ask(llm, workspace, task_type="speech_to_text")
    check(status, body, "INVALID_REQUEST")
    assert body["error"]["field"] == "audio_input_url"
    r = await llm.client.post("/v1/llm/requests", json={"prompt": "x", "request_id": "r-1"})
    check(r.status_code, r.json(), "AUTH_FAILED")
    assert r.json()["request_id"] == "r-1"
    status, body = await ask(llm, workspace, workspace_id=other_workspace.id)
    check(status, body, "AUTH_FAILED")
    assert status == 403
    sims.anthropic_server.faults.push(Fault.respond(429, body=anthropic_error_body("rate_limit_error", "slow down"),
                                                    retry_after=7))
    status, body = await ask(llm, workspace, model="anthropic:claude-3-haiku")
    check(status, body, "RATE_LIMITED")
    assert body["error"]["provider_error"]["retry_after"] == 7
    sims.deepseek_server.faults.push(Fault.respond(502, body="bad gateway"))
    check(*await ask(llm, workspace, model="deepseek:deepseek-v4-flash"), "PROVIDER_UNAVAILABLE")
    check(*await ask(llm, workspace, model="openai:gpt-nope"), "PROVIDER_API_ERROR")
    check(*await ask(llm, workspace, model="openai:gpt-4o", prompt="about forbidden-topic"), "CONTENT_FILTERED")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Ionflux-Workspace": workspace.id}
    assert (await llm.client.put("/v1/llm/limits", headers=admin, json={"budget_usd": 0.0})).status_code == 200
    check(*await ask(llm, workspace, model="openai:gpt-4o"), "QUOTA_EXCEEDED")
    assert seen == {"INVALID_REQUEST": 400, "AUTH_FAILED": 403, "RATE_LIMITED": 429, "PROVIDER_UNAVAILABLE": 503,
                    "PROVIDER_API_ERROR": 502, "CONTENT_FILTERED": 422, "QUOTA_EXCEEDED": 429}


async def test_a_stream_dropped_or_closed_early_still_settles(llm: LLMApp, sims: Sims, workspace) -> None:
    from ionflux.llm.gateway import CallContext
    from ionflux.llm.types import ChatCall, Message

    orchestrator = llm.service.orchestrator
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Ionflux-Workspace": workspace.id}
    await llm.client.put("/v1/llm/limits", headers=admin, json={"budget_usd": 1.0})
    call = ChatCall(model="", messages=(Message("user", "one two three"),), max_tokens=20)
    ctx = CallContext(workspace.id, "req-drop", "text_generation")
    ledger = await orchestrator.ledger.ledger(workspace.id)
    relay, _ = await orchestrator.stream(ctx, orchestrator.chain_for("openai:gpt-4o"), call)
    assert ledger.reserved > 0
    del relay  # the response was never read (the client left at once)
    assert ledger.reserved == 0
    relay, _ = await orchestrator.stream(ctx, orchestrator.chain_for("openai:gpt-4o"), call)
    assert (await anext(relay)).text
    await relay.aclose()  # type: ignore[attr-defined]
    assert ledger.reserved == 0 and ledger.spent > 0
    rows = await usage_rows(llm, workspace)
    assert [(r.status, r.error_code) for r in rows] == [("error", "CLIENT_CLOSED"), ("error", "CLIENT_CLOSED")]


async def test_a_connection_dropped_after_sending_is_not_retried(llm: LLMApp, sims: Sims, workspace) -> None:
    sims.openai_server.faults.push(Fault.reset())  # the request arrived; the answer never comes
    status, body = await ask(llm, workspace, model="openai:gpt-4o")
    assert status == 200 and body["provider_response"]["model_used"] == "anthropic:claude-3-haiku"
    assert len(sims.openai_server.requests) == 1  # a chat completion that may be paid for is not sent twice
