"""What other services may call: `platform.services["email"]` satisfies `EmailSender`."""

from __future__ import annotations

from typing import Protocol

from ionflux.email.schemas import BatchRequest, BatchResult, SendRequest, SendResult


class EmailSender(Protocol):
    async def send(self, workspace_id: str, request: SendRequest) -> SendResult: ...

    async def batch(self, workspace_id: str, request: BatchRequest) -> BatchResult: ...
