"""What other services may use: `platform.services["messaging"]` satisfies `Messaging`.

Channels are named so SMS or Messenger can join beside WhatsApp without changing callers: `send` takes
the channel's own request model (`SendRequest` for WhatsApp) and answers the stored message view
(`id`, `status`: pending | accepted | sent | delivered | read | failed, `error`, timestamps).
Inbound traffic is on the bus: `platform.<channel>.events.messages.received` and `.messages.status`.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from ionflux.messaging.validation import SendRequest

Channel = Literal["whatsapp"]


class Messaging(Protocol):
    channels: tuple[Channel, ...]

    async def send(self, workspace_id: str, channel: Channel, request: SendRequest) -> dict[str, Any]:
        """Check the channel's rules (window, consent, limits), send, and return the message view."""

    async def message(self, workspace_id: str, channel: Channel, message_id: str) -> dict[str, Any]:
        """The message view by our id (404 NOT_FOUND if not this workspace's)."""
