"""HTTP: a workspace reads its own event log and emits events of its own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ionflux.core.auth import PlatformDep, WorkspaceId
from ionflux.core.bus.outbox import emit, list_events

router = APIRouter(prefix="/v1/events", tags=["events"])
AGENT_SOURCE = "agent"


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="topic: platform.<integration>.events.<resource>.<action>",
                      examples=["platform.agents.events.brief.ready"])
    data: dict[str, Any] = Field(description="the event payload, a JSON object")
    subject: str | None = Field(default=None, max_length=255, description="what the event is about, e.g. an id")


class EventAccepted(BaseModel):
    id: str


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(description="CloudEvents 1.0 envelopes plus workspace_id, oldest first")
    next_after: str | None = Field(description="pass as `after` for the next page; null when there is no more")


@router.get("", response_model=EventPage)
async def read_events(
    workspace_id: WorkspaceId,
    platform: PlatformDep,
    topic: str | None = Query(default=None, description="pattern: '*' one word, '#' zero or more words"),
    after: str | None = Query(default=None, description="an event id: list the events after it"),
    limit: int = Query(default=100, ge=1, le=500),
) -> EventPage:
    async with platform.db.tenant(workspace_id) as session:
        events, next_after = await list_events(session, pattern=topic, after=after, limit=limit)
    return EventPage(events=[e.to_envelope() for e in events], next_after=next_after)


@router.post("", status_code=202, response_model=EventAccepted)
async def post_event(body: EventIn, workspace_id: WorkspaceId, platform: PlatformDep) -> EventAccepted:
    async with platform.db.tenant(workspace_id) as session:
        event = emit(session, type=body.type, data=body.data, subject=body.subject, source=AGENT_SOURCE)
    return EventAccepted(id=event.id)
