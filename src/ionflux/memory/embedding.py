"""How memory reaches the LLM service for embeddings: structurally, looked up at call time.

Memory needs only `embed(workspace_id, texts, model)`; it does not import the LLM package, and a process
that runs without the LLM service still serves vector items (a `text` item is then a clear 503).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ionflux.core.errors import InvalidRequest, ServiceUnavailable
from ionflux.core.platform import Platform


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, workspace_id: str, texts: list[str], model: str | None = None) -> list[list[float]]: ...


async def embed_texts(platform: Platform, workspace_id: str, texts: list[str], model: str | None, *,
                      dimension: int, field: str) -> list[np.ndarray]:
    service = platform.services.get("llm")
    if not isinstance(service, Embedder):
        raise ServiceUnavailable("no embedding service runs in this process, so `text` cannot be embedded; "
                                 "send `values` instead, or run the llm service", field=field)
    vectors = await service.embed(workspace_id, texts, model)
    if len(vectors) != len(texts):
        raise ServiceUnavailable(f"the embedding service returned {len(vectors)} vectors for {len(texts)} texts",
                                 field=field)
    out = []
    for vector in vectors:
        if len(vector) != dimension:
            raise InvalidRequest(
                f"dimension mismatch: the embedding model ({model or 'default'}) gives {len(vector)} dimensions, "
                f"the namespace has {dimension}; create the namespace with that dimension or send `values`",
                field=field)
        out.append(np.asarray(vector, dtype=np.float32))
    return out
