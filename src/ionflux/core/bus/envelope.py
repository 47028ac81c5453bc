"""The CloudEvents 1.0 envelope every event travels in, plus the workspace it belongs to."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ionflux.core.errors import InvalidRequest
from ionflux.core.models import OutboxEvent, new_id, utcnow

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
TOPIC_RE = re.compile(r"^platform\.[a-z0-9_]+\.events\.[a-z0-9_]+\.[a-z0-9_]+$")
TOPIC_SHAPE = "platform.<integration>.events.<resource>.<action>"
_MAX_TOPIC = 255


def validate_topic(topic: object) -> str:
    """Return `topic` if it is a well-formed event type; otherwise raise InvalidRequest naming `type`."""
    if not isinstance(topic, str) or len(topic) > _MAX_TOPIC or not TOPIC_RE.match(topic):
        raise InvalidRequest(
            f"event type {topic!r} is not a topic of the form {TOPIC_SHAPE} "
            "(lower-case letters, digits and '_' in each word), e.g. platform.shopify.events.orders.created",
            field="type",
        )
    return topic


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_time(value: datetime) -> str:
    return _aware(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    workspace_id: str
    source: str = "ionflux"
    subject: str | None = None
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)
    specversion: str = SPECVERSION
    datacontenttype: str = CONTENT_TYPE

    @classmethod
    def from_row(cls, row: OutboxEvent | Any) -> Event:
        """From an outbox row: the ORM object or a result row with the same columns."""
        return cls(
            id=row.id, type=row.type, source=row.source, subject=row.subject, time=_aware(row.time),
            data=dict(row.data or {}), workspace_id=row.workspace_id,
        )

    def to_envelope(self) -> dict[str, Any]:
        return {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": format_time(self.time),
            "datacontenttype": self.datacontenttype,
            "workspace_id": self.workspace_id,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_envelope(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> Event:
        """Parse a received envelope; raises ValueError naming the first bad attribute."""
        if envelope.get("specversion") != SPECVERSION:
            raise ValueError(f"specversion must be {SPECVERSION!r}")
        for name in ("id", "source", "workspace_id"):
            if not isinstance(envelope.get(name), str) or not envelope[name]:
                raise ValueError(f"{name} must be a non-empty string")
        try:
            topic = validate_topic(envelope.get("type"))
        except InvalidRequest as exc:
            raise ValueError(exc.message) from None
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ValueError("data must be a JSON object")
        subject = envelope.get("subject")
        if subject is not None and not isinstance(subject, str):
            raise ValueError("subject must be a string")
        try:
            time = _aware(datetime.fromisoformat(str(envelope.get("time"))))
        except ValueError:
            raise ValueError("time must be an RFC 3339 timestamp") from None
        return cls(
            id=envelope["id"], source=envelope["source"], type=topic, subject=subject, time=time,
            data=data, workspace_id=envelope["workspace_id"],
            datacontenttype=str(envelope.get("datacontenttype") or CONTENT_TYPE),
        )

    @classmethod
    def from_json(cls, body: bytes) -> Event:
        try:
            envelope = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"body is not JSON: {exc}") from None
        if not isinstance(envelope, dict):
            raise ValueError("body is not a JSON object")
        return cls.from_envelope(envelope)
