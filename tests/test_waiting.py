"""A background loop stopped by cancelling its task stops, even when the cancellation arrives just as its
wake-up event fires (on Python 3.11, `asyncio.wait_for` loses that cancellation: CPython gh-86296)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from ionflux.core.waiting import wake_or_timeout


async def test_a_cancellation_that_races_the_wake_up_is_never_lost() -> None:
    for _ in range(50):
        wake = asyncio.Event()

        async def loop(wake: asyncio.Event) -> None:
            while True:  # the shape of the runner, email worker and usage writer loops
                await wake_or_timeout(wake, 10)
                wake.clear()

        task = asyncio.create_task(loop(wake))
        await asyncio.sleep(0)  # the loop is waiting now
        wake.set()
        task.cancel()  # in the same tick as the wake-up
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)  # a lost cancellation would leave it looping: TimeoutError here


async def test_it_returns_on_the_event_or_after_the_timeout() -> None:
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wake_or_timeout(wake, 0.05)
    assert loop.time() - started >= 0.04
    wake.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            await wake_or_timeout(wake, 30)  # set already: returns at once
