"""Background loops sleep with `wake_or_timeout`: until their wake-up event is set or the poll interval passes.

Not `asyncio.wait_for(event.wait(), seconds)`: on Python 3.11 that runs the wait in an inner task, and a
`cancel()` arriving just as the event fires is lost (CPython gh-86296), so a loop stopped by cancelling
its task can go on polling forever and its `stop()` never returns (seen as a test teardown hanging).
`asyncio.timeout` waits in the task itself, where a cancellation always lands.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wake_or_timeout(event: asyncio.Event, seconds: float) -> None:
    """Return when `event` is set or after `seconds`; a cancellation of the caller always propagates."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
