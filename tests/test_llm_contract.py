"""POST /v1/llm/requests: the internal contract, over each provider's simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ionflux.core.platform import Platform
from ionflux.sandbox import Fault
from ionflux.sandbox.llm_common import count_tokens
from ionflux.sandbox.openai import openai_error_body
from tests.llm_helpers import (  # noqa: F401 - shared fixtures
    PNG,
    PRICES,
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
from tests.test_llm_simulators import wav_bytes


@pytest.fixture
async def llm(platform: Platform, sims: Sims, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LLMApp]:
    async with llm_app(platform, sims, monkeypatch) as app:
        yield app


async def test_text_generation_openai_usage_and_generated_request_id(llm: LLMApp, workspace) -> None:
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "model": "openai:gpt-4o", "prompt": "Hello there", "system_prompt": "Be brief.",
        "parameters": {"max_tokens": 50, "temperature": 0.2}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["task_type"] == "text_generation"
    assert len(body["request_id"]) >= 16
    out = body["provider_response"]
    assert out["model_used"] == "openai:gpt-4o"
    assert out["choices"] == [{"text": "Echo: Hello there", "finish_reason": "stop"}]
    prompt = count_tokens("Be brief.") + count_tokens("Hello there") + 8
    assert out["usage"] == {"prompt_tokens": prompt, "completion_tokens": count_tokens("Echo: Hello there"),
                            "total_tokens": prompt + count_tokens("Echo: Hello there")}


async def test_anthropic_system_top_level_history_and_length_finish(llm: LLMApp, sims: Sims, workspace) -> None:
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "provider": "anthropic", "model": "claude-3-haiku", "prompt": "one two three four five",
        "system_prompt": "You are terse.", "request_id": "trace-123",
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "parameters": {"max_tokens": 3, "stop_sequences": ["zzz"]}})
    body = r.json()
    assert r.status_code == 200, body
    assert body["request_id"] == "trace-123"
    assert body["provider_response"]["choices"][0] == {"text": "Echo: one", "finish_reason": "length"}
    sent = sims.anthropic_server.requests[-1]
    assert sent.headers["x-api-key"] == "sk-ant-platform-0001" and sent.headers["anthropic-version"] == "2023-06-01"
    payload = sent.json()
    assert payload["system"] == "You are terse." and payload["max_tokens"] == 3
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]
    assert payload["stop_sequences"] == ["zzz"]


async def test_deepseek_old_model_name_maps_to_current(llm: LLMApp, sims: Sims, workspace) -> None:
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers,
                              json={"model": "deepseek:deepseek-chat", "prompt": "hi"})
    assert r.status_code == 200, r.text
    assert sims.deepseek_server.requests[-1].json()["model"] == "deepseek-v4-flash"
    assert sims.deepseek_server.requests[-1].json()["max_tokens"] == 1024


async def test_embedding_openai_string_and_list(llm: LLMApp, workspace) -> None:
    one = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "embedding", "model": "openai:text-embedding-3-small", "text_to_embed": "hello"})
    assert one.status_code == 200, one.text
    assert len(one.json()["provider_response"]["embedding"]) == 1536
    many = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "embedding", "model": "openai:text-embedding-3-small", "text_to_embed": ["a", "b c"]})
    vectors = many.json()["provider_response"]["embedding"]
    assert len(vectors) == 2 and len(vectors[1]) == 1536
    assert many.json()["provider_response"]["usage"]["prompt_tokens"] == 3


async def test_speech_to_text_fetches_audio_url(llm: LLMApp, sims: Sims, workspace) -> None:
    sims.media["/call.wav"] = (wav_bytes(say="ship it today"), "audio/wav")
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "speech_to_text", "audio_input_url": sims.media_server.base_url + "/call.wav"})
    assert r.status_code == 200, r.text
    out = r.json()["provider_response"]
    assert out["transcription"] == "ship it today" and out["model_used"] == "openai:whisper-1"


@pytest.mark.parametrize("model", ["openai:gpt-4o", "anthropic:claude-3-haiku"])
async def test_image_understanding_inlines_the_fetched_image(llm: LLMApp, sims: Sims, workspace, model: str) -> None:
    sims.media["/shirt.png"] = (PNG, "image/png")
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "image_understanding", "model": model, "prompt": "What is this?",
        "image_input_url": sims.media_server.base_url + "/shirt.png"})
    assert r.status_code == 200, r.text
    assert r.json()["provider_response"]["image_analysis_text"] == f"I see 1 image(s): image/png, {len(PNG)} bytes."


async def test_image_embeddings_are_refused(llm: LLMApp, sims: Sims, workspace) -> None:
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "embedding", "image_input_url": sims.media_server.base_url + "/x.png"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_REQUEST" and "image embeddings" in r.json()["error"]["message"]


async def test_vision_on_a_provider_without_it_is_invalid(llm: LLMApp, sims: Sims, workspace) -> None:
    sims.media["/a.png"] = (PNG, "image/png")
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "task_type": "image_understanding", "model": "deepseek:deepseek-v4-flash",
        "image_input_url": sims.media_server.base_url + "/a.png"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "model"


async def test_calls_are_counted_in_the_metrics(llm: LLMApp, sims: Sims, workspace) -> None:
    r = await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "model": "openai:gpt-4o", "prompt": "Count me", "parameters": {"max_tokens": 20}})
    usage = r.json()["provider_response"]["usage"]
    sims.openai_server.faults.push(Fault.respond(400, body=openai_error_body("bad", "invalid_request_error")))
    assert (await llm.client.post("/v1/llm/requests", headers=workspace.headers, json={
        "model": "openai:gpt-4o", "prompt": "Refused"})).status_code == 400
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families((await llm.client.get("/metrics")).text)
               for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    model = "openai:gpt-4o"
    assert value("ionflux_llm_requests_total", task="text_generation", model=model, outcome="success") == 1
    assert value("ionflux_llm_requests_total", task="text_generation", model=model, outcome="INVALID_REQUEST") == 1
    assert value("ionflux_llm_tokens_total", model=model, kind="prompt") == usage["prompt_tokens"]
    assert value("ionflux_llm_tokens_total", model=model, kind="completion") == usage["completion_tokens"]
    price = PRICES[model]
    cost = (usage["prompt_tokens"] * price["input"] + usage["completion_tokens"] * price["output"]) / 1e6
    assert value("ionflux_llm_cost_usd_total", model=model) == pytest.approx(cost)
    assert value("ionflux_llm_request_seconds_count", task="text_generation") == 2
