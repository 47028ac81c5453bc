"""The OpenAI and Anthropic simulators speak the real wire protocol: the official SDKs accept them."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import anthropic
import httpx
import openai
import pytest

from ionflux.sandbox import Fault, SimulatorServer
from ionflux.sandbox.anthropic import AnthropicSimulator, anthropic_error_body
from ionflux.sandbox.llm_common import count_tokens
from ionflux.sandbox.openai import OpenAISimulator, openai_error_body


def wav_bytes(seconds: float = 0.5, say: str | None = None) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    data = buf.getvalue()
    return data + (b"IONFLUX-SAY:" + say.encode() + b"\x00" if say else b"")


@pytest.fixture
async def oai() -> AsyncIterator[tuple[SimulatorServer, OpenAISimulator, openai.AsyncOpenAI]]:
    sim = OpenAISimulator()
    async with SimulatorServer(sim.app, name="openai") as server:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="sk-test", max_retries=0)
        yield server, sim, client
        await client.close()


@pytest.fixture
async def ant() -> AsyncIterator[tuple[SimulatorServer, AnthropicSimulator, anthropic.AsyncAnthropic]]:
    sim = AnthropicSimulator()
    async with SimulatorServer(sim.app, name="anthropic") as server:
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)
        yield server, sim, client
        await client.close()


async def test_openai_sdk_chat_usage_from_input(oai) -> None:
    _, _, client = oai
    out = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, you"}])
    assert out.choices[0].message.content == "Echo: Hello, you"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None
    assert out.usage.prompt_tokens == count_tokens("Be brief.") + count_tokens("Hello, you") + 8
    assert out.usage.completion_tokens == count_tokens("Echo: Hello, you")


async def test_openai_sdk_stream_with_usage_and_length_cut(oai) -> None:
    _, _, client = oai
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three four"}], stream=True,
        stream_options={"include_usage": True}, max_completion_tokens=3)
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "Echo: one"
    assert finish == "length"
    assert usage is not None and usage.completion_tokens == 3


async def test_openai_sdk_sees_mid_stream_error_event_and_cut(oai) -> None:
    _, sim, client = oai
    sim.state.cut_stream(after_chunks=1, mode="error_event")
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a b c"}], stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    sim.state.cut_stream(after_chunks=1, mode="abort")
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a b c"}], stream=True)
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        async for _ in stream:
            pass


async def test_openai_sdk_embeddings_base64_default_and_dimensions(oai) -> None:
    _, _, client = oai
    out = await client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])  # SDK: base64
    assert len(out.data) == 2 and len(out.data[0].embedding) == 1536
    small = await client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8,
                                           encoding_format="float")
    assert len(small.data[0].embedding) == 8
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)


async def test_openai_sdk_transcription_multipart(oai) -> None:
    _, _, client = oai
    out = await client.audio.transcriptions.create(model="whisper-1", file=("hi.wav", wav_bytes(say="hello there")))
    assert out.text == "hello there"
    with pytest.raises(openai.BadRequestError):
        await client.audio.transcriptions.create(model="whisper-1", file=("notes.txt", b"plain"))


async def test_openai_sdk_errors_429_401_404_and_o_series_max_tokens(oai) -> None:
    server, sim, client = oai
    server.faults.push(Fault.respond(429, body=openai_error_body("Rate limit reached", "requests",
                                                                 "rate_limit_exceeded"), retry_after=1))
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    sim.state.keys = {"sk-good"}
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    sim.state.keys = None
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    assert "max_completion_tokens" in str(info.value)


async def test_openai_content_filter_finish_reason(oai) -> None:
    _, _, client = oai
    out = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "tell me about forbidden-topic"}])
    assert out.choices[0].finish_reason == "content_filter"


async def test_anthropic_sdk_message_usage_and_stop_reasons(ant) -> None:
    _, _, client = ant
    msg = await client.messages.create(model="claude-3-haiku", max_tokens=100, system="Be brief.",
                                       messages=[{"role": "user", "content": "Hello there"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: Hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == count_tokens("Hello there") + 4 + count_tokens("Be brief.")
    cut = await client.messages.create(model="claude-3-haiku", max_tokens=2,
                                       messages=[{"role": "user", "content": "Hello there"}])
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2
    stopped = await client.messages.create(model="claude-3-haiku", max_tokens=50, stop_sequences=["there"],
                                           messages=[{"role": "user", "content": "Hello there"}])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "there"


async def test_anthropic_sdk_stream_and_error_event(ant) -> None:
    _, sim, client = ant
    async with client.messages.stream(model="claude-3-haiku", max_tokens=100,
                                      messages=[{"role": "user", "content": "stream me"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Echo: stream me" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == count_tokens("Echo: stream me")
    sim.state.cut_stream(after_chunks=1, mode="error_event")
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(model="claude-3-haiku", max_tokens=100,
                                          messages=[{"role": "user", "content": "stream me"}]) as stream:
            async for _ in stream.text_stream:
                pass


async def test_anthropic_sdk_strictness(ant) -> None:
    server, _, client = ant
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="claude-3-haiku", max_tokens=10,
                                     messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "y"}])
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.create(model="claude-9", max_tokens=10, messages=[{"role": "user", "content": "y"}])
    raw = httpx.AsyncClient()
    r = await raw.post(server.base_url + "/v1/messages", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                       json={"model": "claude-3-haiku", "messages": [{"role": "user", "content": "y"}]})
    await raw.aclose()
    assert r.status_code == 400 and r.json()["error"]["message"] == "max_tokens: Field required"
    server.faults.push(Fault.respond(529, body=anthropic_error_body("overloaded_error", "Overloaded")))
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.create(model="claude-3-haiku", max_tokens=10, messages=[{"role": "user", "content": "y"}])
    assert info.value.status_code == 529
    msg = await client.messages.create(model="claude-3-haiku", max_tokens=10,
                                       messages=[{"role": "user", "content": "forbidden-topic please"}])
    assert msg.stop_reason == "refusal" and msg.content == []
