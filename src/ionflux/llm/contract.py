"""The internal contract, `POST /v1/llm/requests`: request and response shapes of the IONFLUX spec."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ionflux.core.errors import IonfluxError
from ionflux.llm.types import TaskType


class HistoryItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=1_000_000)


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop_sequences: list[str] | None = Field(default=None, max_length=16)


class LLMRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=160)
    task_type: TaskType = "text_generation"
    prompt: str | None = Field(default=None, max_length=1_000_000)
    text_to_embed: str | list[str] | None = None
    audio_input_url: str | None = Field(default=None, max_length=4096)
    image_input_url: str | None = Field(default=None, max_length=4096)
    system_prompt: str | None = Field(default=None, max_length=1_000_000)
    history: list[HistoryItem] = Field(default_factory=list, max_length=1000)
    parameters: Parameters = Field(default_factory=Parameters)
    user_id: str | None = Field(default=None, max_length=128)
    workspace_id: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("request_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value

    @field_validator("text_to_embed")
    @classmethod
    def _texts(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or not all(v for v in value)):
            raise ValueError("must be a non-empty string or a non-empty list of non-empty strings")
        if isinstance(value, str) and not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _inputs_of_task(self) -> LLMRequest:
        task = self.task_type
        if task == "text_generation" and not self.prompt and not any(h.role == "user" for h in self.history):
            raise ValueError("prompt: text_generation needs a prompt (or a history with a user turn)")
        if task == "embedding" and self.text_to_embed is None and self.image_input_url is None:
            raise ValueError("text_to_embed: embedding needs text_to_embed")
        if task == "speech_to_text" and not self.audio_input_url:
            raise ValueError("audio_input_url: speech_to_text needs audio_input_url")
        if task == "image_understanding" and not self.image_input_url:
            raise ValueError("image_input_url: image_understanding needs image_input_url")
        return self


def success(request_id: str, task: TaskType, *, id: str, model_used: str, choices: list[dict[str, Any]] | None = None,
            embedding: Any = None, transcription: str | None = None, image_analysis_text: str | None = None,
            prompt_tokens: int = 0, completion_tokens: int = 0) -> dict[str, Any]:
    return {
        "status": "success", "request_id": request_id, "task_type": task,
        "provider_response": {
            "id": id, "model_used": model_used, "choices": choices or [], "embedding": embedding,
            "transcription": transcription, "image_analysis_text": image_analysis_text,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        },
    }


def failure(request_id: str | None, exc: IonfluxError) -> dict[str, Any]:
    """`provider_error` carries what the provider said (redacted by the HTTP toolkit), else null."""
    details = exc.details or {}
    provider_error: dict[str, Any] | None = None
    if "provider" in details:
        provider_error = {k: details[k] for k in ("provider", "status", "provider_body", "reason", "retry_after",
                                                  "attempts") if k in details}
    error: dict[str, Any] = {"code": exc.code, "message": exc.message, "provider_error": provider_error}
    if exc.field:
        error["field"] = exc.field
    if "retry_after" in details:
        error["retry_after"] = details["retry_after"]
    return {"status": "error", "request_id": request_id, "error": error}
