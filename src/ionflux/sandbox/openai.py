"""A strict OpenAI API simulator (shared/API_FACTS.md §8): chat completions (and their SSE stream),
embeddings (float or base64), audio transcriptions (multipart, ≤ 25 MB) and the model list.

It refuses what OpenAI refuses, with OpenAI's error body `{"error": {message, type, param, code}}`: a
missing or wrong key (401), an unknown model (404), `max_tokens` on an o-series model, out-of-range
`temperature`/`top_p`, `dimensions` on a model without it, empty inputs (400). `flavor="deepseek"` serves
DeepSeek's OpenAI-compatible surface (with and without `/v1`, its own model names). Usage is computed from
the input (`llm_common.count_tokens`). Faults (429, 5xx, latency, resets) come from the `SimulatorServer`'s
`faults`; stream cuts and the content filter from `state` (see `llm_common`).

    sim = OpenAISimulator()
    async with SimulatorServer(sim.app) as server:   # base URL: server.base_url + "/v1"
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import random
import struct
import time
import uuid
import wave
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ionflux.sandbox.llm_common import MESSAGE_OVERHEAD, LLMSimState, SSEWriter, answer, count_tokens, describe_image

OPENAI_CHAT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini")
OPENAI_EMBEDDING_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                           "text-embedding-ada-002": 1536}
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-transcribe")
DEEPSEEK_MODELS = ("deepseek-v4-flash", "deepseek-v4-pro")
AUDIO_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MAX_EMBEDDING_INPUTS = 2048
SAY_MARKER = b"IONFLUX-SAY:"  # a simulated transcript can be carried inside the audio file (tests)


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


def openai_error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    """For scripted faults: `Fault.respond(429, body=openai_error_body(...), retry_after=1)`."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class OpenAISimulator:
    def __init__(self, flavor: Literal["openai", "deepseek"] = "openai", state: LLMSimState | None = None) -> None:
        self.flavor = flavor
        self.state = state or LLMSimState()
        self.chat_models = DEEPSEEK_MODELS if flavor == "deepseek" else OPENAI_CHAT_MODELS
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]
        if flavor == "openai":
            routes += [Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                       Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"])]
        else:  # DeepSeek also answers without /v1
            routes += [Route("/chat/completions", self.chat, methods=["POST"]),
                       Route("/models", self.models, methods=["GET"])]
        self.app = Starlette(routes=routes, exception_handlers={OpenAIError: _error_handler})

    # -- common -----------------------------------------------------------------------------------
    def _auth(self, request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise OpenAIError(401, "You didn't provide an API key. You need to provide your API key in an "
                              "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if not self.state.key_ok(key.strip()):
            raise OpenAIError(401, f"Incorrect API key provided: {key[:3]}****{key[-4:]}.", code="invalid_api_key")

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise OpenAIError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise OpenAIError(400, "The request body must be a JSON object.")
        return body

    def _model(self, body: dict[str, Any], known: tuple[str, ...] | dict[str, int]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise OpenAIError(400, "you must provide a model parameter", param="model")
        if model not in known:
            raise OpenAIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                              param="model", code="model_not_found")
        return model

    async def models(self, request: Request) -> Response:
        self._auth(request)
        names = [*self.chat_models, *(OPENAI_EMBEDDING_MODELS if self.flavor == "openai" else ()),
                 *(TRANSCRIPTION_MODELS if self.flavor == "openai" else ())]
        return JSONResponse({"object": "list", "data": [
            {"id": n, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for n in names]})

    # -- chat -------------------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        self._auth(request)
        body = await self._json(request)
        model = self._model(body, self.chat_models)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise OpenAIError(400, "'messages' must be a non-empty array", param="messages")
        texts, images, last_user = [], [], ""
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in (
                    "system", "developer", "user", "assistant", "tool"):
                raise OpenAIError(400, f"Invalid value for 'messages[{i}].role'", param=f"messages[{i}].role")
            text, found = _message_text(message.get("content"), i)
            texts.append(text)
            images += found
            if message["role"] == "user":
                last_user = text
        limit = self._limits(body, model)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        prompt_tokens = sum(count_tokens(t) + MESSAGE_OVERHEAD for t in texts)
        out = answer(self.state, last_user, images, limit, stop, texts)
        finish = "content_filter" if out.finish == "filtered" else out.finish
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": out.completion_tokens,
                 "total_tokens": prompt_tokens + out.completion_tokens,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return _ChatStream(self.state, cid, model, out.text, finish, usage if include_usage else None)
        if body.get("stream_options") is not None:
            raise OpenAIError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                              param="stream_options")
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text, "refusal": None,
                                                 "annotations": []},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage, "service_tier": "default", "system_fingerprint": "fp_ionflux_sim",
        })

    def _limits(self, body: dict[str, Any], model: str) -> int:
        if model.startswith("o") and "max_tokens" in body:
            raise OpenAIError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                              "Use 'max_completion_tokens' instead.", param="max_tokens",
                              code="unsupported_parameter")
        for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
            value = body.get(name)
            if value is not None and (not isinstance(value, int | float) or not low <= value <= high):
                raise OpenAIError(400, f"Invalid '{name}': expected a number between {low} and {high}.",
                                  param=name, code="invalid_value")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is None:
            return 4096
        if not isinstance(limit, int) or limit < 1:
            raise OpenAIError(400, "Invalid 'max_completion_tokens': expected an integer >= 1.",
                              param="max_completion_tokens", code="invalid_value")
        return limit

    # -- embeddings -------------------------------------------------------------------------------
    async def embeddings(self, request: Request) -> Response:
        self._auth(request)
        body = await self._json(request)
        model = self._model(body, OPENAI_EMBEDDING_MODELS)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_EMBEDDING_INPUTS or not all(
                isinstance(x, str) and x for x in inputs):
            raise OpenAIError(400, "'input' must be a non-empty string or an array of 1 to 2048 non-empty strings.",
                              param="input")
        dims = OPENAI_EMBEDDING_MODELS[model]
        asked = body.get("dimensions")
        if asked is not None:
            if not model.startswith("text-embedding-3"):
                raise OpenAIError(400, "This model does not support specifying dimensions.", param="dimensions")
            if not isinstance(asked, int) or not 1 <= asked <= dims:
                raise OpenAIError(400, f"'dimensions' must be between 1 and {dims}.", param="dimensions")
            dims = asked
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise OpenAIError(400, "'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text, dims)
            value: Any = (base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if fmt == "base64"
                          else vector)
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(count_tokens(t) for t in inputs)
        return JSONResponse({"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- transcriptions ---------------------------------------------------------------------------
    async def transcriptions(self, request: Request) -> Response:
        self._auth(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise OpenAIError(400, "Expected multipart/form-data with a 'file' field.", param="file")
        form = await request.form(max_part_size=MAX_AUDIO_BYTES + 1)
        model = form.get("model")
        if not isinstance(model, str) or model not in TRANSCRIPTION_MODELS:
            raise OpenAIError(400 if not model else 404, f"Invalid model {model!r} for transcription.",
                              param="model", code=None if not model else "model_not_found")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise OpenAIError(400, "'file' is a required multipart field.", param="file")
        data = await upload.read()
        ext = (upload.filename or "").rsplit(".", 1)[-1].lower()
        if ext not in AUDIO_EXTENSIONS:
            raise OpenAIError(400, f"Invalid file format. Supported formats: {AUDIO_EXTENSIONS}", param="file")
        if len(data) > MAX_AUDIO_BYTES:
            raise OpenAIError(413, "Maximum content size limit (26214400) exceeded.", param="file")
        fmt = form.get("response_format", "json")
        text = transcript_of(data)
        if fmt == "text":
            return PlainTextResponse(text + "\n")
        if fmt == "json":
            return JSONResponse({"text": text})
        if fmt == "verbose_json":
            return JSONResponse({"task": "transcribe", "language": form.get("language") or "english",
                                 "duration": wav_duration(data) or 0.0, "text": text, "segments": []})
        raise OpenAIError(400, f"Invalid response_format {fmt!r}.", param="response_format")


async def _error_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return exc.response()


def _message_text(content: Any, i: int) -> tuple[str, list[str]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise OpenAIError(400, f"Invalid type for 'messages[{i}].content'", param=f"messages[{i}].content")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance((part.get("image_url") or {}).get("url"), str):
            images.append(describe_image(part["image_url"]["url"]))
        else:
            raise OpenAIError(400, f"Invalid content part in 'messages[{i}].content'", param=f"messages[{i}].content")
    return " ".join(texts), images


def fake_embedding(text: str, dims: int) -> list[float]:
    """A unit vector seeded by the text: the same text always gets the same vector."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())  # noqa: S311 - not for security
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def wav_duration(data: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(data)) as w:
            frames, rate = int(w.getnframes()), int(w.getframerate())
        return frames / rate
    except (wave.Error, EOFError, ZeroDivisionError):
        return None


def transcript_of(data: bytes) -> str:
    if SAY_MARKER in data:
        said = data.split(SAY_MARKER, 1)[1].split(b"\x00", 1)[0]
        return said.decode("utf-8", errors="replace").strip()
    duration = wav_duration(data)
    return f"({duration:.1f} seconds of audio)" if duration is not None else f"({len(data)} bytes of audio)"


class _ChatStream(Response):
    """chat.completion.chunk events then `data: [DONE]`, or a scripted cut (connection drop or error event)."""

    def __init__(self, state: LLMSimState, cid: str, model: str, text: str, finish: str,
                 usage: dict[str, Any] | None) -> None:
        super().__init__()
        self.state, self.cid, self.model, self.text, self.finish, self.usage = state, cid, model, text, finish, usage

    def _chunk(self, delta: dict[str, Any], finish: str | None, created: int) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.cid, "object": "chat.completion.chunk", "created": created, "model": self.model,
            "system_fingerprint": "fp_ionflux_sim", "service_tier": "default",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.usage is not None:
            chunk["usage"] = None
        return chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from ionflux.sandbox.llm_common import split_tokens

        writer = SSEWriter(scope, send)
        cut = self.state.take_cut()
        created = int(time.time())
        await writer.start()
        await writer.event(self._chunk({"role": "assistant", "content": "", "refusal": None}, None, created))
        pieces = split_tokens(self.text)
        for sent, piece in enumerate([*pieces, None]):
            if cut is not None and (sent >= cut.after_chunks or piece is None):
                if cut.mode == "abort":
                    await writer.abort()
                    return
                await writer.event(openai_error_body("The server had an error while processing your request.",
                                                     "server_error"))
                await writer.end()
                return
            if piece is None:
                break
            if self.state.chunk_delay:
                await asyncio.sleep(self.state.chunk_delay)
            await writer.event(self._chunk({"content": piece}, None, created))
        await writer.event(self._chunk({}, self.finish, created))
        if self.usage is not None:
            await writer.event({"id": self.cid, "object": "chat.completion.chunk", "created": created,
                                "model": self.model, "system_fingerprint": "fp_ionflux_sim", "choices": [],
                                "usage": self.usage})
        await writer.event("[DONE]")
        await writer.end()
