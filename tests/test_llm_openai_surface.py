"""The official `openai` SDK pointed at IONFLUX (base_url, workspace token as api_key) works unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from ionflux.core.platform import Platform
from ionflux.sandbox.llm_common import count_tokens
from tests.conftest import WorkspaceHandle
from tests.llm_helpers import (  # noqa: F401 - shared fixtures
    PNG,
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

ALIASES = {"smart": "openai:gpt-4o", "cheap": "anthropic:claude-3-haiku"}


@pytest.fixture
async def llm(platform: Platform, sims: Sims, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LLMApp]:
    async with llm_app(platform, sims, monkeypatch, IONFLUX_LLM_ALIASES=ALIASES) as app:
        yield app


@pytest.fixture
async def sdk(llm: LLMApp, workspace: WorkspaceHandle) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=llm.app))
    client = openai.AsyncOpenAI(base_url="http://ionflux.test/v1", api_key=workspace.token, http_client=http,
                                max_retries=0)
    yield client
    await client.close()


async def test_chat_through_each_provider(sdk: openai.AsyncOpenAI) -> None:
    for model in ("openai:gpt-4o", "anthropic:claude-3-haiku", "deepseek:deepseek-v4-flash", "cheap"):
        out = await sdk.chat.completions.create(
            model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi you"}],
            max_completion_tokens=20)
        assert out.choices[0].message.content == "Echo: Hi you", model
        assert out.choices[0].finish_reason == "stop"
        assert out.usage is not None
        assert out.usage.prompt_tokens == count_tokens("Be brief.") + count_tokens("Hi you") + (8 if model in (
            "openai:gpt-4o", "deepseek:deepseek-v4-flash") else 4)
        assert out.model == ("anthropic:claude-3-haiku" if model == "cheap" else model)


async def test_stream_with_usage(sdk: openai.AsyncOpenAI) -> None:
    for model in ("smart", "anthropic:claude-3-haiku"):
        stream = await sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "stream this please"}], stream=True,
            stream_options={"include_usage": True})
        text, finish, usage = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            usage = chunk.usage or usage
        assert text == "Echo: stream this please" and finish == "stop", model
        assert usage is not None and usage.completion_tokens == count_tokens(text)


async def test_mid_stream_failure_is_an_explicit_error(sdk: openai.AsyncOpenAI, sims: Sims) -> None:
    for cut in ("abort", "error_event"):
        sims.openai.state.cut_stream(after_chunks=2, mode=cut)  # type: ignore[arg-type]
        stream = await sdk.chat.completions.create(
            model="openai:gpt-4o", messages=[{"role": "user", "content": "one two three four"}], stream=True)
        received = ""
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                received += chunk.choices[0].delta.content or "" if chunk.choices else ""
        assert received == "Echo:"  # two tokens arrived, then the error, never a silent end
        assert info.value.body["code"] == "PROVIDER_UNAVAILABLE"  # type: ignore[index]


async def test_embeddings_base64_default_float_and_dimensions(sdk: openai.AsyncOpenAI) -> None:
    out = await sdk.embeddings.create(model="openai:text-embedding-3-small", input=["hello", "world"])
    assert [len(d.embedding) for d in out.data] == [1536, 1536]
    short = await sdk.embeddings.create(model="openai:text-embedding-3-small", input="hello", dimensions=16,
                                        encoding_format="float")
    assert len(short.data[0].embedding) == 16
    assert short.usage.prompt_tokens == 1
    with pytest.raises(openai.BadRequestError):
        await sdk.embeddings.create(model="anthropic:claude-3-haiku", input="x")


async def test_transcription_multipart(sdk: openai.AsyncOpenAI) -> None:
    out = await sdk.audio.transcriptions.create(model="openai:whisper-1", file=("a.wav", wav_bytes(say="hello")))
    assert out.text == "hello"
    text = await sdk.audio.transcriptions.create(model="openai:whisper-1", file=("a.wav", wav_bytes(say="hi")),
                                                 response_format="text")
    assert text.strip() == "hi"


async def test_vision_data_url_and_models_list(sdk: openai.AsyncOpenAI) -> None:
    import base64

    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    out = await sdk.chat.completions.create(model="anthropic:claude-3-haiku", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert out.choices[0].message.content == f"I see 1 image(s): image/png, {len(PNG)} bytes."
    ids = [m.id async for m in sdk.models.list()]
    assert "smart" in ids and "openai:gpt-4o" in ids and "local:all-MiniLM-L6-v2" in ids


async def test_errors_map_to_sdk_exceptions(sdk: openai.AsyncOpenAI, llm: LLMApp) -> None:
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])  # no provider
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model="openai:gpt-4o", messages=[{"role": "user", "content": "x"}],
                                          temperature=3)
    bad = openai.AsyncOpenAI(base_url="http://ionflux.test/v1", api_key="ifx_wrong", max_retries=0,
                             http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=llm.app)))
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="openai:gpt-4o", messages=[{"role": "user", "content": "x"}])
    await bad.close()
