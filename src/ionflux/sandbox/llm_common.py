"""What the OpenAI and Anthropic simulators share: a deterministic tokenizer and "model", scripted stream
failures, and raw-ASGI server-sent events (so a stream can be cut the way a dying upstream cuts it).

The "model" answers `Echo: <last user text>` (cut at `max_tokens` tokens or a stop sequence), or describes
the images it was given; a prompt containing one of `blocked_words` trips the content filter. Token counts
come from the input with one rule (words and punctuation marks are tokens), so tests can predict usage.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.types import Scope, Send

from ionflux.sandbox.faults import TRANSPORT_EXTENSION

_TOKEN = re.compile(r"\w+|[^\w\s]")
MESSAGE_OVERHEAD = 4  # tokens a chat message costs beyond its text (role and separators), as real models charge


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def split_tokens(text: str) -> list[str]:
    """Pieces that concatenate back to `text`, one token each (whitespace rides with the next token)."""
    pieces: list[str] = []
    last = 0
    for match in _TOKEN.finditer(text):
        pieces.append(text[last:match.end()])
        last = match.end()
    if last < len(text) and pieces:
        pieces[-1] += text[last:]
    return pieces


@dataclass
class StreamCut:
    """Break the next stream after `after_chunks` content chunks: `abort` drops the TCP connection,
    `error_event` sends the provider's own error event and ends the stream."""

    after_chunks: int = 1
    mode: Literal["abort", "error_event"] = "abort"


@dataclass
class LLMSimState:
    keys: set[str] | None = None  # None: any non-empty key works
    blocked_words: set[str] = field(default_factory=lambda: {"forbidden-topic"})
    chunk_delay: float = 0.0  # seconds between streamed chunks
    reply: str | None = None  # answer this instead of the echo
    stream_cuts: list[StreamCut] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cut_stream(self, after_chunks: int = 1, mode: Literal["abort", "error_event"] = "abort") -> None:
        with self._lock:
            self.stream_cuts.append(StreamCut(after_chunks, mode))

    def take_cut(self) -> StreamCut | None:
        with self._lock:
            return self.stream_cuts.pop(0) if self.stream_cuts else None

    def key_ok(self, key: str) -> bool:
        return bool(key) and (self.keys is None or key in self.keys)

    def blocked(self, texts: Iterable[str]) -> bool:
        return any(word in text.lower() for text in texts for word in self.blocked_words)


@dataclass
class Answer:
    text: str
    finish: Literal["stop", "length", "filtered"]
    completion_tokens: int


def answer(state: LLMSimState, last_user: str, images: list[str], max_tokens: int, stop: list[str],
           prompt_texts: list[str]) -> Answer:
    if state.blocked(prompt_texts):
        return Answer("", "filtered", 0)
    if state.reply is not None:
        text = state.reply
    elif images:
        text = f"I see {len(images)} image(s): " + "; ".join(images) + "."
    else:
        text = f"Echo: {last_user}"
    finish: Literal["stop", "length", "filtered"] = "stop"
    for seq in stop:
        if seq and seq in text:
            text = text[: text.index(seq)]
    pieces = split_tokens(text)
    if len(pieces) > max_tokens:
        text, finish = "".join(pieces[:max_tokens]), "length"
    return Answer(text, finish, count_tokens(text))


class SSEWriter:
    """Send server-sent events on raw ASGI; `abort()` resets the TCP connection mid-body."""

    def __init__(self, scope: Scope, send: Send, headers: dict[str, str] | None = None) -> None:
        self.scope = scope
        self.send = send
        self.headers = headers or {}

    async def start(self) -> None:
        raw = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await self.send({"type": "http.response.start", "status": 200, "headers": raw})

    async def event(self, data: Any, name: str | None = None) -> None:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        await self.send({"type": "http.response.body", "body": frame.encode(), "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def abort(self) -> None:
        transport = self.scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
        if transport is None:
            raise RuntimeError("a stream cut needs the SimulatorServer's HTTP protocol (no transport in scope)")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        await asyncio.sleep(0)


def describe_image(url: str) -> str:
    """What the simulated vision model "sees": the media type and size of an inline image."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        media_type = header[5:].split(";")[0] or "application/octet-stream"
        size = len(payload) * 3 // 4 - payload[-2:].count("=") if ";base64" in header else len(payload)
        return f"{media_type}, {size} bytes"
    return "an image at a URL"
