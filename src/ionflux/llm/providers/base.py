"""The adapter contract; the HTTP calls adapters share are in `http.py`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry

from ionflux.core.errors import InvalidRequest, IonfluxError
from ionflux.core.http import ProviderHttpMetrics
from ionflux.llm.types import (
    ChatCall,
    ChatResult,
    EmbeddingResult,
    StreamDelta,
    TranscriptionCall,
    TranscriptionResult,
)

log = logging.getLogger("ionflux.llm")

Capability = str  # "chat" | "stream" | "embed" | "transcribe" | "vision"


class ProviderAdapter:
    """One provider. Subclasses implement the calls their `capabilities` name; others refuse clearly."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    needs_key: ClassVar[bool] = True

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def refuse(self, capability: Capability, model: str) -> InvalidRequest:
        what = {"chat": "text generation", "stream": "streaming", "embed": "embeddings",
                "transcribe": "speech to text", "vision": "image understanding"}.get(capability, capability)
        return InvalidRequest(f"model: {self.name}:{model} does not offer {what}", field="model")

    async def chat(self, call: ChatCall, key: str | None) -> ChatResult:
        raise self.refuse("chat", call.model)

    def stream(self, call: ChatCall, key: str | None) -> AsyncIterator[StreamDelta]:
        raise self.refuse("stream", call.model)

    async def embed(self, model: str, texts: list[str], dimensions: int | None, key: str | None) -> EmbeddingResult:
        raise self.refuse("embed", model)

    async def transcribe(self, call: TranscriptionCall, key: str | None) -> TranscriptionResult:
        raise self.refuse("transcribe", call.model)

    async def aclose(self) -> None:
        """Release connections and workers."""


def provider_metrics() -> ProviderHttpMetrics:
    """The toolkit's per-attempt metrics for the LLM adapters, on a registry of their own: the toolkit's
    series names can be registered once per registry, and another service registers them on the app's.
    The LLM service's own series (ionflux_llm_*, accounting.py) are on the app's registry."""
    return ProviderHttpMetrics(CollectorRegistry())


def stream_broken(provider: str, message: str, **details: Any) -> IonfluxError:
    """A stream that ended without its provider's end marker, or carried the provider's error event."""
    from ionflux.core.errors import ProviderUnavailable

    return ProviderUnavailable(f"{provider} {message}", details={"provider": provider, **details})
