"""Waiting in tests: poll a condition (sync or async) until it holds, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.models import OutboxEvent


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    """Poll `predicate` (sync, or returning an awaitable) until it is truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def outbox_rows(db: Database) -> list[OutboxEvent]:
    async with db.system() as s:
        return list((await s.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))).all())
