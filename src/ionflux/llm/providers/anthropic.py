"""Anthropic Messages API (shared/API_FACTS.md §8): POST /v1/messages with `x-api-key` and
`anthropic-version: 2023-06-01`; `max_tokens` is required; the system prompt is top-level (there is no
system role in `messages`); usage is `input_tokens`/`output_tokens` (+ cache reads and writes, which are
input too); `stop_reason` maps onto OpenAI's `finish_reason`. Streams are named SSE events.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import orjson

from ionflux.core.http import AuthStyle, ProviderHttpMetrics
from ionflux.llm.providers.base import ProviderAdapter, stream_broken
from ionflux.llm.providers.http import HttpProvider, sse_events
from ionflux.llm.providers.openai_compat import llm_profile
from ionflux.llm.settings import AnthropicSettings
from ionflux.llm.types import ChatCall, ChatResult, FinishReason, Message, StreamDelta, Usage

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}


def _usage(data: dict[str, Any]) -> Usage:
    prompt = sum(int(data.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens",
                                                  "cache_read_input_tokens"))
    return Usage(prompt, int(data.get("output_tokens") or 0))


def _content(message: Message) -> str | list[dict[str, Any]]:
    if not message.images:
        return message.text
    blocks: list[dict[str, Any]] = [
        {"type": "image", "source": {"type": "base64", "media_type": image.media_type,
                                     "data": base64.b64encode(image.data).decode()}}
        for image in message.images
    ]
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    return blocks


class AnthropicAdapter(ProviderAdapter):
    name: ClassVar[str] = "anthropic"
    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "stream", "vision"})

    def __init__(self, settings: AnthropicSettings, metrics: ProviderHttpMetrics) -> None:
        profile = llm_profile(self.name, settings, AuthStyle("x-api-key", None),
                              headers=(("anthropic-version", settings.version),))
        self.http = HttpProvider(profile, metrics)

    async def aclose(self) -> None:
        await self.http.aclose()

    def body(self, call: ChatCall, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": call.model, "max_tokens": call.max_tokens,
            "messages": [{"role": m.role, "content": _content(m)} for m in call.messages],
        }
        if call.system:
            body["system"] = call.system
        if call.temperature is not None:
            body["temperature"] = min(call.temperature, 1.0)  # Anthropic's range is 0-1
        if call.top_p is not None:
            body["top_p"] = call.top_p
        if call.stop:
            body["stop_sequences"] = list(call.stop)
        if call.user:
            body["metadata"] = {"user_id": call.user}
        if stream:
            body["stream"] = True
        return body

    async def chat(self, call: ChatCall, key: str | None) -> ChatResult:
        data = await self.http.post_json("/v1/messages", self.body(call, stream=False), key)
        try:
            text = "".join(b.get("text", "") for b in data["content"] if b.get("type") == "text")
            finish = _FINISH.get(data.get("stop_reason") or "end_turn", "stop")
            result = ChatResult(id=str(data.get("id", "")), model=str(data.get("model", call.model)), text=text,
                                finish_reason=finish, usage=_usage(data.get("usage") or {}))
        except (KeyError, TypeError, AttributeError):
            raise stream_broken(self.name, "answered a message in an unexpected shape") from None
        return result

    async def stream(self, call: ChatCall, key: str | None) -> AsyncIterator[StreamDelta]:
        async with self.http.open_stream("/v1/messages", self.body(call, stream=True), key) as response:
            prompt_tokens, message_id, finish = 0, None, None
            async for event, data in sse_events(self.name, response):
                if event == "ping" or not data:
                    continue
                try:
                    payload = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise stream_broken(self.name, "sent a stream event that is not JSON", reason="bad_event") from None
                kind = event or payload.get("type")
                if kind == "error":
                    error = payload.get("error") or {}
                    raise stream_broken(self.name, f"reported {error.get('type', 'an error')} mid-stream: "
                                        f"{error.get('message', '')}"[:300], reason="error_event")
                if kind == "message_start":
                    message = payload.get("message") or {}
                    message_id = message.get("id")
                    prompt_tokens = _usage(message.get("usage") or {}).prompt_tokens
                elif kind == "content_block_delta":
                    delta = payload.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield StreamDelta(text=delta["text"], id=message_id)
                elif kind == "message_delta":
                    reason = (payload.get("delta") or {}).get("stop_reason")
                    finish = _FINISH.get(reason, "stop") if reason else finish
                    usage = payload.get("usage") or {}
                    counted = _usage(usage)
                    yield StreamDelta(finish_reason=finish, id=message_id,
                                      usage=Usage(counted.prompt_tokens or prompt_tokens, counted.completion_tokens))
                elif kind == "message_stop":
                    return
            raise stream_broken(self.name, "ended the stream without message_stop", reason="truncated")
