"""Event bus and transactional outbox: `emit` in your transaction, `EventBus.subscribe` to consume."""

from ionflux.core.bus.consumers import Handler, Subscription
from ionflux.core.bus.envelope import Event, validate_topic
from ionflux.core.bus.eventbus import EventBus
from ionflux.core.bus.outbox import emit, emit_many
from ionflux.core.bus.patterns import TopicPattern, compile_pattern
from ionflux.core.bus.relay import Backoff, OutboxRelay

__all__ = [
    "Backoff",
    "Event",
    "EventBus",
    "Handler",
    "OutboxRelay",
    "Subscription",
    "TopicPattern",
    "compile_pattern",
    "emit",
    "emit_many",
    "validate_topic",
]
