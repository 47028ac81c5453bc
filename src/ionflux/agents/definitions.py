"""`AgentDefinition`: an agent blueprint (YAML or JSON) parsed, checked and normalised.

```yaml
id: shopify_sales_sentinel
name: Shopify Sales Sentinel
version: 1.0.0
triggers:
  - {type: event, topic: platform.shopify.events.orders.created}
  - {type: schedule, cron: "0 8 * * *", timezone: UTC}
inputs: {threshold: {type: number, default: 100}, channel: {type: string, enum: [email, whatsapp]}}
outputs: {alerted: boolean}
stack: {models: ["openai:gpt-4o"]}
memory: {type: vector, namespace_template: "sentinel_{{instance_id}}"}
```
Every problem is an InvalidRequest naming the field (e.g. `triggers.0.cron`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ionflux.agents.schema import normalise_schema
from ionflux.core.bus import compile_pattern
from ionflux.core.errors import InvalidRequest

DEFINITION_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MODEL_NAME = re.compile(r"^[a-z0-9_-]+:[A-Za-z0-9._:/-]+$")


class ScheduleTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["schedule"]
    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. UTC, America/New_York)") from None
        return value


class EventTrigger(BaseModel):
    """`event`: a bus topic pattern. `webhook`: the same, for events that arrive through `/webhooks/...`."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["event", "webhook"]
    topic: str
    path: str | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        try:
            compile_pattern(value)
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/webhooks/"):
            raise ValueError("a webhook path is where the provider posts, e.g. /webhooks/shopify")
        return value


Trigger = Annotated[ScheduleTrigger | EventTrigger, Field(discriminator="type")]


class StackSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    models: list[str] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        for name in value:
            if not MODEL_NAME.match(name):
                raise ValueError(f"{name!r} is not a model in provider:model notation, e.g. openai:gpt-4o")
        return value


class MemorySpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "vector"
    namespace_template: str = Field(min_length=1, max_length=200)


class AgentDefinition(BaseModel):
    """A blueprint. Fields it does not know (prompts, KPIs, ...) are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    triggers: list[Trigger] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    stack: StackSpec = Field(default_factory=StackSpec)
    memory: MemorySpec | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not DEFINITION_ID.match(value):
            raise ValueError("must be 1-100 of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _schemas(self) -> AgentDefinition:
        # normalise in place (frozen model: go through __dict__)
        self.__dict__["inputs"] = normalise_schema(self.inputs, field="inputs")
        self.__dict__["outputs"] = normalise_schema(self.outputs, field="outputs", closed=False) if self.outputs else {}
        return self

    @property
    def event_topics(self) -> list[str]:
        return [t.topic for t in self.triggers if isinstance(t, EventTrigger)]

    @property
    def schedules(self) -> list[ScheduleTrigger]:
        return [t for t in self.triggers if isinstance(t, ScheduleTrigger)]

    @property
    def default_model(self) -> str | None:
        return self.stack.models[0] if self.stack.models else None

    def document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_definition(source: str | bytes | dict[str, Any]) -> AgentDefinition:
    """A definition from YAML text or an already-parsed mapping."""
    if isinstance(source, str | bytes):
        try:
            source = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise InvalidRequest(f"the definition is not valid YAML: {exc}", field="body") from None
    if not isinstance(source, dict):
        raise InvalidRequest("a definition must be a mapping (id, name, version, triggers, inputs, ...)", field="body")
    try:
        return AgentDefinition.model_validate(source)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    # drop the discriminator tag pydantic puts in the location of union members
    loc = [str(p) for p in err.get("loc", ()) if p not in ("schedule", "event", "webhook")]
    name = ".".join(loc) or "body"
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        message = "is required"
    elif err.get("type") == "union_tag_invalid":
        message = "type must be one of schedule, event, webhook"
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, InvalidRequest):
        return ctx_error
    return InvalidRequest(f"{name}: {message}", field=name)
