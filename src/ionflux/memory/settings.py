"""Memory settings (`IONFLUX_MEMORY_*`) and the Qdrant and Pinecone connection settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ionflux.core.settings import ServiceSettings


class MemorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_MEMORY_", extra="ignore")

    backend: Literal["embedded", "qdrant", "pinecone"] = Field(
        default="embedded", description="the vector engine of this deployment")
    directory: Path | None = Field(default=None, description="embedded HNSW files; default <data_dir>/memory")
    exact_threshold: int = Field(default=20_000, ge=0, description="below this many records: exact search")
    snapshot_seconds: float = Field(default=60.0, gt=0, description="how often changed HNSW graphs are saved")
    idle_seconds: float = Field(default=900.0, gt=0, description="a namespace unused this long leaves memory")
    hnsw_dtype: Literal["bf16", "f16", "f32"] = "bf16"
    hnsw_connectivity: int = Field(default=16, ge=4, le=128)
    hnsw_expansion_add: int = Field(default=64, ge=8, le=1024)
    hnsw_expansion_search: int = Field(default=64, ge=8, le=1024)
    default_dimension: int = Field(default=384, gt=0, description="dimension of a namespace created without one")


class QdrantSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_QDRANT_", extra="ignore")

    base_url: str = Field(default="", description="Qdrant server URL; empty: the client's local mode")
    path: str = Field(default="", description="local mode storage directory; empty: <data_dir>/qdrant")
    collection_prefix: str = "ionflux_"
    timeout: int = Field(default=30, gt=0)


class PineconeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_PINECONE_", extra="ignore")

    base_url: str = Field(default="", description="the index host, e.g. https://<index>-<project>.svc.<env>.pinecone.io")
    timeout: float = Field(default=30.0, gt=0)
