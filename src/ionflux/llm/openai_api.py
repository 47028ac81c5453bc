"""The OpenAI-compatible surface: the official `openai` SDK, pointed at IONFLUX with a workspace token as its
API key, works unchanged. Models are `provider:model` names or configured aliases.

    POST /v1/chat/completions   (stream: true → server-sent chunks; a failure after the first token ends
                                 the stream with an explicit `data: {"error": …}` event and no [DONE])
    POST /v1/embeddings         (encoding_format float or base64, as the SDK asks by default)
    POST /v1/audio/transcriptions  (multipart)
    GET  /v1/models
"""

from __future__ import annotations

import array
import base64
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ionflux.core.auth import WorkspaceId
from ionflux.core.errors import InvalidRequest, IonfluxError
from ionflux.core.observability import new_request_id, request_id_var
from ionflux.llm.api import caller_workspace, json_response, validation_error
from ionflux.llm.gateway import CallContext
from ionflux.llm.media import AUDIO_EXTENSIONS
from ionflux.llm.service import LLMOrchestrator
from ionflux.llm.types import Audio, ChatCall, Image, Message, StreamDelta, TranscriptionCall, Usage

MAX_AUDIO_BYTES = 25 * 1024 * 1024
M = TypeVar("M", bound=BaseModel)
_UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "logprobs", "audio", "prediction")


class ImageURL(BaseModel):
    url: str = Field(max_length=30_000_000)


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=160)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=128)
    n: int | None = None


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=160)
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = Field(default=None, max_length=128)


def _context(workspace_id: str, task: Literal["text_generation", "embedding", "speech_to_text"],
             user: str | None) -> CallContext:
    return CallContext(workspace_id, request_id_var.get() or new_request_id(), task, user)


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _b64(vector: list[float]) -> str:
    packed = array.array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def parse(model: type[M], raw: bytes) -> M:
    """One pass of pydantic-core over the raw body (cheaper than FastAPI's parse-then-validate)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def build_openai_router(llm: LLMOrchestrator) -> APIRouter:
    router = APIRouter(tags=["openai-compatible"])

    async def to_call(body: ChatCompletionIn) -> ChatCall:
        for name in _UNSUPPORTED:
            if (body.model_extra or {}).get(name) is not None:
                raise InvalidRequest(f"{name}: not supported by the IONFLUX gateway", field=name)
        if body.n not in (None, 1):
            raise InvalidRequest("n: only one choice per request is supported", field="n")
        systems: list[str] = []
        messages: list[Message] = []
        for i, m in enumerate(body.messages):
            texts: list[str] = []
            images: list[Image] = []
            for j, part in enumerate([m.content] if not isinstance(m.content, list) else m.content):
                if part is None:
                    continue
                if isinstance(part, str):
                    texts.append(part)
                elif part.type == "text":
                    texts.append(part.text or "")
                elif part.image_url is not None and m.role == "user":
                    images.append(await llm.media.image(part.image_url.url,
                                                        field=f"messages.{i}.content.{j}.image_url.url"))
                else:
                    raise InvalidRequest(f"messages.{i}.content.{j}: images go in user messages, with an image_url",
                                         field=f"messages.{i}.content.{j}")
            text = "\n".join(texts)
            if m.role in ("system", "developer"):
                systems.append(text)
            else:
                messages.append(Message("user" if m.role == "user" else "assistant", text, tuple(images)))
        if not messages:
            raise InvalidRequest("messages: at least one user or assistant message is needed", field="messages")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        asked = body.max_completion_tokens or body.max_tokens
        return ChatCall(model="", messages=tuple(messages), system="\n\n".join(systems) or None,
                        max_tokens=llm.max_tokens(asked, "max_completion_tokens"), temperature=body.temperature,
                        top_p=body.top_p, stop=tuple(stop), user=body.user)

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        workspace_id = await caller_workspace(request)
        body = parse(ChatCompletionIn, await request.body())
        chain = llm.chain_for(body.model)
        call = await to_call(body)
        ctx = _context(workspace_id, "text_generation", body.user)
        if body.stream:
            deltas, answer = await llm.stream(ctx, chain, call)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(deltas, answer.ref.name, ctx.request_id, include_usage),
                                     media_type="text/event-stream", headers={"cache-control": "no-cache"})
        result, answer = await llm.chat(ctx, chain, call)
        return json_response({
            "id": result.id or f"chatcmpl-{ctx.request_id}", "object": "chat.completion", "created": int(time.time()),
            "model": answer.ref.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text, "refusal": None},
                         "logprobs": None, "finish_reason": result.finish_reason}],
            "usage": _usage(result.usage),
        })

    @router.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        workspace_id = await caller_workspace(request)
        body = parse(EmbeddingsIn, await request.body())
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise InvalidRequest("input: a non-empty string or a list of non-empty strings (token arrays are not "
                                 "accepted)", field="input")
        strings = [t for t in texts if isinstance(t, str)]
        result, answer = await llm.embed_texts(_context(workspace_id, "embedding", body.user),
                                               llm.chain_for(body.model, "embedding"), strings, body.dimensions)
        encode = _b64 if body.encoding_format == "base64" else (lambda v: v)
        data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(result.vectors)]
        return json_response({"object": "list", "data": data, "model": answer.ref.name,
                              "usage": {"prompt_tokens": result.usage.prompt_tokens,
                                        "total_tokens": result.usage.prompt_tokens}})

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(
        workspace_id: WorkspaceId, file: Annotated[UploadFile, File()], model: Annotated[str, Form()],
        language: Annotated[str | None, Form()] = None, prompt: Annotated[str | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json", temperature: Annotated[float | None, Form()] = None,
    ) -> Response:
        if response_format not in ("json", "text", "verbose_json"):
            raise InvalidRequest("response_format: json, text or verbose_json", field="response_format")
        name = file.filename or "audio"
        if name.rsplit(".", 1)[-1].lower() not in AUDIO_EXTENSIONS:
            raise InvalidRequest(f"file: the file name must end in one of {', '.join(AUDIO_EXTENSIONS)}", field="file")
        data = await file.read(MAX_AUDIO_BYTES + 1)
        if len(data) > MAX_AUDIO_BYTES:
            raise InvalidRequest("file: audio over 25 MB cannot be transcribed", field="file")
        audio = Audio(data, name, file.content_type or "application/octet-stream")
        call = TranscriptionCall("", audio, language=language, prompt=prompt, temperature=temperature)
        result, _ = await llm.gateway.transcribe(_context(workspace_id, "speech_to_text", None),
                                                 llm.chain_for(model, "speech_to_text"), call)
        if response_format == "text":
            return PlainTextResponse(result.text)
        if response_format == "verbose_json":
            return json_response({"task": "transcribe", "language": language, "duration": None, "text": result.text,
                                  "segments": []})
        return json_response({"text": result.text})

    @router.get("/v1/models")
    async def models(_workspace_id: WorkspaceId) -> Response:
        data = [{"id": name, "object": "model", "created": 0,
                 "owned_by": llm.router.aliases.get(name, name).split(":", 1)[0]}
                for name in llm.router.known_models()]
        return json_response({"object": "list", "data": data})

    return router


async def _sse(deltas: AsyncIterator[StreamDelta], model: str, request_id: str,
               include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())
    cid = f"chatcmpl-{request_id}"

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            body["usage"] = None
        return b"data: " + orjson.dumps(body) + b"\n\n"

    usage: Usage | None = None
    finish = "stop"
    async with contextlib.aclosing(deltas):  # type: ignore[type-var]
        yield chunk({"role": "assistant", "content": ""}, None)
        try:
            async for delta in deltas:
                if delta.text:
                    yield chunk({"content": delta.text}, None)
                finish = delta.finish_reason or finish
                usage = delta.usage or usage
        except IonfluxError as exc:
            # After the first token the status line is long gone: say so in the stream, never end it quietly.
            error = {"message": exc.message, "type": "provider_error", "code": exc.code, "param": None}
            yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
            return
    yield chunk({}, finish)
    if include_usage:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": _usage(usage or Usage())}
        yield b"data: " + orjson.dumps(body) + b"\n\n"
    yield b"data: [DONE]\n\n"
