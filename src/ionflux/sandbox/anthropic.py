"""A strict Anthropic Messages API simulator (shared/API_FACTS.md §8): POST /v1/messages, plain and streamed.

Refused as Anthropic refuses, with `{"type": "error", "error": {type, message}, "request_id"}`: no or wrong
key (401 authentication_error; `x-api-key`, or `Authorization: Bearer` as SDK 2.14 sends it), no
`anthropic-version` header, no `max_tokens`, a `system` role inside `messages`, an out-of-range
`temperature` (400 invalid_request_error), an unknown model (404 not_found_error). Stop reasons:
end_turn, max_tokens, stop_sequence, refusal (the content filter). Streams
are the named events message_start, content_block_start, ping, content_block_delta, content_block_stop,
message_delta, message_stop; a scripted cut drops the connection or sends `event: error` (overloaded_error).
Use `anthropic_error_body` with `Fault.respond(429|529, ...)` for rate limits and overload.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ionflux.sandbox.llm_common import (
    MESSAGE_OVERHEAD,
    LLMSimState,
    SSEWriter,
    answer,
    count_tokens,
    split_tokens,
)

ANTHROPIC_MODELS = ("claude-3-haiku", "claude-3-haiku-20240307", "claude-sonnet-4-5", "claude-opus-4-1",
                    "claude-haiku-4-5")
_STOP = {"stop": "end_turn", "length": "max_tokens", "filtered": "refusal"}


def anthropic_error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:24]}"}


class AnthropicError(Exception):
    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


async def _error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AnthropicError)
    return JSONResponse(anthropic_error_body(exc.type, exc.message), status_code=exc.status)


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


class AnthropicSimulator:
    def __init__(self, state: LLMSimState | None = None) -> None:
        self.state = state or LLMSimState()
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])],
                             exception_handlers={AnthropicError: _error_handler})

    async def messages(self, request: Request) -> Response:
        # The documented header is x-api-key; SDK 2.14 sends the same key as `Authorization: Bearer`.
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        key = request.headers.get("x-api-key", "") or (bearer.strip() if scheme.lower() == "bearer" else "")
        if not self.state.key_ok(key):
            raise AnthropicError(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")
        try:
            body = await request.json()
        except ValueError:
            raise _invalid("There was an issue with your request body: invalid JSON") from None
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise _invalid("max_tokens: Field required")
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise _invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
            raise _invalid("temperature: Input should be less than or equal to 1")
        if model not in ANTHROPIC_MODELS:
            raise AnthropicError(404, "not_found_error", f"model: {model}")
        system = body.get("system")
        system_texts = _system_texts(system)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid("messages: at least one message is required")
        texts, images, last_user = [], [], ""
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                raise _invalid(f"messages.{i}.role: Unexpected role \"system\". The Messages API accepts a "
                               "top-level `system` parameter, not \"system\" as an input message role.")
            if role not in ("user", "assistant"):
                raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            text, found = _content(message.get("content"), i)
            texts.append(text)
            images += found
            if role == "user":
                last_user = text
        stop = body.get("stop_sequences") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _invalid("stop_sequences: Input should be a valid list of strings")
        prompt_tokens = sum(count_tokens(t) + MESSAGE_OVERHEAD for t in texts) + sum(
            count_tokens(t) for t in system_texts)
        out = answer(self.state, last_user, images, max_tokens, stop, [*texts, *system_texts])
        stop_reason = _STOP[out.finish]
        stop_sequence = None
        if out.finish == "stop" and stop and self.state.reply is None:
            stop_sequence = next((s for s in stop if s and s in f"Echo: {last_user}"), None)
            stop_reason = "stop_sequence" if stop_sequence else stop_reason
        mid = f"msg_{uuid.uuid4().hex[:24]}"
        usage = {"input_tokens": prompt_tokens, "output_tokens": out.completion_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "service_tier": "standard"}
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if body.get("stream"):
            return _MessageStream(self.state, mid, model, out.text, stop_reason, stop_sequence, usage, headers)
        content = [{"type": "text", "text": out.text}] if out.text else []
        return JSONResponse({"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
                             "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage},
                            headers=headers)


def _system_texts(system: Any) -> list[str]:
    if system is None:
        return []
    if isinstance(system, str):
        return [system]
    if isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        return [str(b.get("text", "")) for b in system]
    raise _invalid("system: Input should be a valid string or a list of text blocks")


def _content(content: Any, i: int) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list) or not content:
        raise _invalid(f"messages.{i}.content: Input should be a valid string or a non-empty list of blocks")
    texts, images = [], []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                if source.get("media_type") not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
                    raise _invalid(f"messages.{i}.content: image media_type must be jpeg, png, gif or webp")
                data = str(source.get("data", ""))
                images.append(f"{source['media_type']}, {len(data) * 3 // 4 - data[-2:].count('=')} bytes")
            elif source.get("type") == "url":
                images.append("an image at a URL")
            else:
                raise _invalid(f"messages.{i}.content: image source must be base64 or url")
        else:
            raise _invalid(f"messages.{i}.content: unsupported content block")
    return " ".join(texts), images


class _MessageStream(Response):
    def __init__(self, state: LLMSimState, mid: str, model: str, text: str, stop_reason: str,
                 stop_sequence: str | None, usage: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__()
        self.state, self.mid, self.model, self.text = state, mid, model, text
        self.stop_reason, self.stop_sequence, self.usage, self.extra = stop_reason, stop_sequence, usage, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writer = SSEWriter(scope, send, self.extra)
        cut = self.state.take_cut()
        await writer.start()
        start_usage = {**self.usage, "output_tokens": 1}
        await writer.event({"type": "message_start", "message": {
            "id": self.mid, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}}, "message_start")
        await writer.event({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}, "content_block_start")
        await writer.event({"type": "ping"}, "ping")
        pieces = split_tokens(self.text)
        for sent, piece in enumerate([*pieces, None]):
            if cut is not None and (sent >= cut.after_chunks or piece is None):
                if cut.mode == "abort":
                    await writer.abort()
                    return
                await writer.event(anthropic_error_body("overloaded_error", "Overloaded"), "error")
                await writer.end()
                return
            if piece is None:
                break
            if self.state.chunk_delay:
                await asyncio.sleep(self.state.chunk_delay)
            await writer.event({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
        await writer.event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        await writer.event({"type": "message_delta",
                            "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
                            "usage": {"output_tokens": self.usage["output_tokens"]}}, "message_delta")
        await writer.event({"type": "message_stop"}, "message_stop")
        await writer.end()
