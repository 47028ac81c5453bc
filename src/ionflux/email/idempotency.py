"""Accepting a send or a batch once per idempotency key, also when two requests race for the key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.db import Database

A = TypeVar("A")
R = TypeVar("R")


async def accept_once(db: Database, workspace_id: str, key: str | None, accept: Callable[[], Awaitable[A]],
                      replay: Callable[[AsyncSession, str], Awaitable[R | None]]) -> A | R:
    """`accept()`; if it lost the key's unique constraint to a concurrent twin, the twin's result instead."""
    try:
        return await accept()
    except IntegrityError:
        if key is None:
            raise
        async with db.tenant(workspace_id) as session:
            first = await replay(session, key)
        if first is None:
            raise
        return first
