"""Memory test helpers: a deterministic embedder and backends built for the conformance suite."""

from __future__ import annotations

import hashlib
import re

import numpy as np

DIM = 32


class HashEmbedder:
    """Hashing-trick bag of words: texts sharing words get nearby unit vectors (a real function, not canned)."""

    def __init__(self, dimension: int = DIM) -> None:
        self.dimension = dimension
        self.calls: list[tuple[str, list[str], str | None]] = []

    async def embed(self, workspace_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        self.calls.append((workspace_id, list(texts), model))
        out = []
        for text in texts:
            vec = np.zeros(self.dimension)
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                digest = hashlib.sha256(word.encode()).digest()
                vec[int.from_bytes(digest[:4], "big") % self.dimension] += 1.0 if digest[4] % 2 else -1.0
            norm = np.linalg.norm(vec)
            out.append((vec / norm if norm else np.eye(self.dimension)[0]).tolist())
        return out


def unit(rng: np.random.Generator, dim: int = DIM) -> list[float]:
    v = rng.standard_normal(dim)
    return (v / np.linalg.norm(v)).tolist()
