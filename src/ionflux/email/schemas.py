"""The service's request and response shapes (pydantic; no HTTP framework here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import NotRequired, TypedDict  # noqa: UP035 - pydantic needs this TypedDict before 3.12

MAX_BATCH = 10_000
TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: Any = Field(alias="from", description='"a@x.com" or {"email": "a@x.com", "name": "A"}')
    to: list[Any] = Field(default_factory=list)
    cc: list[Any] = Field(default_factory=list)
    bcc: list[Any] = Field(default_factory=list)
    reply_to: Any = None
    subject: str | None = Field(default=None, max_length=998)
    text: str | None = None
    html: str | None = None
    template_id: str | None = Field(default=None, max_length=128)
    template_data: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    send_at: datetime | None = None
    marketing: bool | None = Field(default=None, description="adds List-Unsubscribe (default: the template's flag)")


@with_config(ConfigDict(extra="forbid"))
class BatchRecipient(TypedDict):
    """A plain dict, not a model: a batch holds 10,000 of them for the whole request."""

    to: Any
    template_data: NotRequired[dict[str, Any]]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sender: Any = Field(alias="from")
    reply_to: Any = None
    subject: str | None = Field(default=None, max_length=998)
    text: str | None = None
    html: str | None = None
    template_id: str | None = Field(default=None, max_length=128)
    recipients: list[BatchRecipient] = Field(min_length=1, max_length=MAX_BATCH)
    tags: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    send_at: datetime | None = None
    marketing: bool | None = None


class Refusal(BaseModel):
    email: str
    reason: str


class SendResult(BaseModel):
    message_id: str
    status: str
    refused: list[Refusal] = Field(default_factory=list)
    provider: str | None = None
    idempotent_replay: bool = False


class RecipientResult(BaseModel):
    index: int
    email: str
    message_id: str | None
    status: str  # the message's status, or "refused"
    error: str | None = None


class BatchResult(BaseModel):
    batch_id: str
    recipients: int
    accepted: int
    refused: int
    results: list[RecipientResult]
    idempotent_replay: bool = False


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=998)
    text: str | None = None
    html: str | None = None
    marketing: bool = False


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str
    reason: str = "manual"
    detail: str | None = Field(default=None, max_length=1000)


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    fallback_provider: str | None = None
    ses_topic_arn: str | None = Field(default=None, max_length=255, pattern=TOPIC_ARN,
                                      description="the SNS topic SES publishes this workspace's bounces to")
