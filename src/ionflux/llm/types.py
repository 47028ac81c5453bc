"""Provider-neutral shapes of one LLM call: what the gateway hands an adapter, and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
TaskType = Literal["text_generation", "embedding", "speech_to_text", "image_understanding"]


@dataclass(frozen=True)
class Image:
    """An image inlined as bytes (fetched by us, SSRF-safely): providers never fetch a caller's URL."""

    data: bytes
    media_type: str


@dataclass(frozen=True)
class Message:
    role: Role
    text: str
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class ChatCall:
    model: str  # the provider's own model name (no "provider:" prefix)
    messages: tuple[Message, ...]  # user/assistant turns; system prompts are in `system`
    system: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    user: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]


@dataclass(frozen=True)
class ChatResult:
    id: str
    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage


@dataclass(frozen=True)
class StreamDelta:
    """A piece of a streamed answer: text, or the end (finish_reason and usage when the provider tells)."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    id: str | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    model: str
    vectors: list[list[float]]
    usage: Usage


@dataclass(frozen=True)
class Audio:
    data: bytes
    filename: str
    media_type: str


@dataclass(frozen=True)
class TranscriptionCall:
    model: str
    audio: Audio
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class TranscriptionResult:
    model: str
    text: str
    usage: Usage = field(default_factory=Usage)
