"""OpenAI, and DeepSeek through its OpenAI-compatible API (shared/API_FACTS.md §8).

Chat: POST /chat/completions (`max_completion_tokens`; `max_tokens` is deprecated at OpenAI; DeepSeek takes
`max_tokens`). Streams are SSE chunks ending with `data: [DONE]`; usage comes in a last chunk when
`stream_options.include_usage` is set. Embeddings: POST /embeddings. Transcriptions: multipart POST
/audio/transcriptions (≤ 25 MB). Images go inline as data URLs in `image_url` content parts.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import orjson

from ionflux.core.errors import ContentFiltered, InvalidRequest, IonfluxError
from ionflux.core.http import AuthStyle, BreakerSpec, ProviderHttpMetrics, ProviderProfile, RetryPolicy, Timeouts
from ionflux.llm.providers.base import ProviderAdapter, stream_broken
from ionflux.llm.providers.http import HttpProvider, parse_json, sse_events
from ionflux.llm.settings import ProviderSettings
from ionflux.llm.types import (
    ChatCall,
    ChatResult,
    EmbeddingResult,
    FinishReason,
    StreamDelta,
    TranscriptionCall,
    TranscriptionResult,
    Usage,
)

MAX_AUDIO_BYTES = 25 * 1024 * 1024
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "content_filter",
                                    "tool_calls": "tool_calls", "function_call": "tool_calls"}
_FILTER_CODES = ("content_policy_violation", "content_filter")


def llm_profile(name: str, settings: ProviderSettings, auth: AuthStyle,
                headers: tuple[tuple[str, str], ...] = ()) -> ProviderProfile:
    """One attempt per call (fallback chains, not retries, handle a failing provider), except that a
    connection that never opened is tried once more."""
    return ProviderProfile(
        name=name, base_url=settings.base_url,
        timeouts=Timeouts(connect=settings.connect_timeout, read=settings.timeout, write=settings.timeout,
                          pool=settings.connect_timeout, total=settings.timeout),
        retry=RetryPolicy(max_attempts=2, backoff_base=0.05, backoff_cap=0.2),
        breaker=BreakerSpec(failure_threshold=5, cool_down=15.0),
        auth=auth, default_headers=headers,
    )


def content_filtered(exc: IonfluxError) -> IonfluxError:
    """OpenAI refuses some prompts with a 400 whose error code says so: that is CONTENT_FILTERED."""
    body = str(exc.details.get("provider_body", ""))
    if isinstance(exc, InvalidRequest) and any(code in body for code in _FILTER_CODES):
        return ContentFiltered("the provider's content filter refused the prompt", details=exc.details)
    return exc


class OpenAICompatibleAdapter(ProviderAdapter):
    name: ClassVar[str] = "openai"
    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "stream", "embed", "transcribe", "vision"})
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def __init__(self, settings: ProviderSettings, metrics: ProviderHttpMetrics) -> None:
        self.http = HttpProvider(llm_profile(self.name, settings, AuthStyle("Authorization", "Bearer")), metrics)

    async def aclose(self) -> None:
        await self.http.aclose()

    def chat_body(self, call: ChatCall, *, stream: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if call.system:
            messages.append({"role": "system", "content": call.system})
        for m in call.messages:
            if m.images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
                for image in m.images:
                    url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                messages.append({"role": m.role, "content": parts})
            else:
                messages.append({"role": m.role, "content": m.text})
        body: dict[str, Any] = {"model": call.model, "messages": messages, self.max_tokens_field: call.max_tokens}
        if call.temperature is not None:
            body["temperature"] = call.temperature
        if call.top_p is not None:
            body["top_p"] = call.top_p
        if call.stop:
            body["stop"] = list(call.stop)
        if call.user:
            body["user"] = call.user
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def chat(self, call: ChatCall, key: str | None) -> ChatResult:
        try:
            data = await self.http.post_json("/chat/completions", self.chat_body(call, stream=False), key)
        except IonfluxError as exc:
            raise content_filtered(exc) from None
        try:
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return ChatResult(
                id=str(data.get("id", "")), model=str(data.get("model", call.model)),
                text=choice["message"].get("content") or "",
                finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),
                usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            raise stream_broken(self.name, "answered a chat completion without choices") from None

    async def stream(self, call: ChatCall, key: str | None) -> AsyncIterator[StreamDelta]:
        try:
            async with self.http.open_stream("/chat/completions", self.chat_body(call, stream=True), key) as response:
                done = False
                async for _event, data in sse_events(self.name, response):
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    delta = self._chunk(data)
                    if delta is not None:
                        yield delta
                if not done:
                    raise stream_broken(self.name, "ended the stream without [DONE]", reason="truncated")
        except IonfluxError as exc:
            raise content_filtered(exc) from None

    def _chunk(self, data: str) -> StreamDelta | None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise stream_broken(self.name, "sent a stream event that is not JSON", reason="bad_event") from None
        if not isinstance(chunk, dict):
            raise stream_broken(self.name, "sent a stream event that is not an object", reason="bad_event")
        if chunk.get("error"):
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            raise stream_broken(self.name, f"reported an error mid-stream: {error.get('message', '')}"[:300],
                                reason="error_event")
        usage = chunk.get("usage")
        parsed_usage = (Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
                        if isinstance(usage, dict) else None)
        choices = chunk.get("choices") or []
        if not choices:
            return StreamDelta(usage=parsed_usage, id=chunk.get("id")) if parsed_usage else None
        choice = choices[0]
        text = (choice.get("delta") or {}).get("content") or ""
        finish = choice.get("finish_reason")
        if not text and finish is None and parsed_usage is None:
            return None
        return StreamDelta(text=text, finish_reason=_FINISH.get(finish, "stop") if finish else None,
                           usage=parsed_usage, id=chunk.get("id"))

    async def embed(self, model: str, texts: list[str], dimensions: int | None, key: str | None) -> EmbeddingResult:
        body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        data = await self.http.post_json("/embeddings", body, key)
        try:
            rows = sorted(data["data"], key=lambda row: int(row["index"]))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
            usage = data.get("usage") or {}
        except (KeyError, TypeError, ValueError):
            raise stream_broken(self.name, "answered embeddings in an unexpected shape") from None
        return EmbeddingResult(str(data.get("model", model)), vectors, Usage(int(usage.get("prompt_tokens", 0)), 0))

    async def transcribe(self, call: TranscriptionCall, key: str | None) -> TranscriptionResult:
        if len(call.audio.data) > MAX_AUDIO_BYTES:
            raise InvalidRequest("file: audio over 25 MB cannot be transcribed", field="file")
        fields: dict[str, Any] = {"model": call.model, "response_format": "json"}
        for name in ("language", "prompt", "temperature"):
            if getattr(call, name) is not None:
                fields[name] = str(getattr(call, name))
        files = {"file": (call.audio.filename, call.audio.data, call.audio.media_type)}
        request = httpx.Request("POST", "http://multipart.invalid", data=fields, files=files)  # httpx's encoder
        answer = await self.http.post("/audio/transcriptions", request.read(), request.headers["content-type"], key)
        data = parse_json(self.name, answer)
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise stream_broken(self.name, "answered a transcription without text")
        return TranscriptionResult(call.model, data["text"])


class DeepSeekAdapter(OpenAICompatibleAdapter):
    """DeepSeek: OpenAI-compatible chat only. `deepseek-chat`/`deepseek-reasoner` were deprecated on 2026-07-24
    and map to `deepseek-v4-flash` (non-thinking and thinking mode respectively)."""

    name: ClassVar[str] = "deepseek"
    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "stream"})
    max_tokens_field: ClassVar[str] = "max_tokens"
    RENAMED: ClassVar[dict[str, tuple[str, bool]]] = {
        "deepseek-chat": ("deepseek-v4-flash", False),
        "deepseek-reasoner": ("deepseek-v4-flash", True),
    }

    def chat_body(self, call: ChatCall, *, stream: bool) -> dict[str, Any]:
        current, thinking = self.RENAMED.get(call.model, (call.model, False))
        body = super().chat_body(call, stream=stream)
        body["model"] = current
        if thinking:
            body["thinking"] = {"type": "enabled"}
        return body
