"""The per-call lookup cache: entries live `seconds`; concurrent misses share one load (single flight)."""

from __future__ import annotations

import asyncio

import pytest

from ionflux.core.ttl_cache import TtlCache


class Loader:
    def __init__(self, value: object = "v", fail: bool = False) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.value = value
        self.fail = fail

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("database away")
        return self.value


async def test_a_hundred_concurrent_misses_run_one_load() -> None:
    cache: TtlCache[str, object] = TtlCache(60)
    load = Loader()
    waiting = [asyncio.create_task(cache.get("k", load)) for _ in range(100)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*waiting) == ["v"] * 100
    assert load.calls == 1
    assert await cache.get("k", load) == "v" and load.calls == 1  # then served from the cache


async def test_a_cancelled_caller_does_not_cancel_the_load_for_the_others() -> None:
    cache: TtlCache[str, object] = TtlCache(60)
    load = Loader()
    first = asyncio.create_task(cache.get("k", load))
    second = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    first.cancel()
    load.release.set()
    assert await second == "v" and load.calls == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    cache: TtlCache[str, object] = TtlCache(60)
    load = Loader(fail=True)
    waiting = [asyncio.create_task(cache.get("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    load.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and load.calls == 1
    load.fail = False
    assert await cache.get("k", load) == "v" and load.calls == 2


async def test_a_load_running_when_forget_is_called_is_not_kept() -> None:
    # A token revoked while its lookup was in flight must not be served from the cache afterwards.
    cache: TtlCache[str, object] = TtlCache(60)
    load = Loader("old")
    running = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    cache.forget()
    load.release.set()
    assert await running == "old"
    load.value = "new"
    assert await cache.get("k", load) == "new" and load.calls == 2


async def test_values_not_kept_and_a_disabled_cache_load_every_time() -> None:
    kept: TtlCache[str, object] = TtlCache(60, keep=lambda v: v is not None)
    load = Loader(None)
    load.release.set()
    assert await kept.get("k", load) is None and await kept.get("k", load) is None and load.calls == 2
    disabled: TtlCache[str, object] = TtlCache(0)
    other = Loader()
    other.release.set()
    await disabled.get("k", other)
    await disabled.get("k", other)
    assert other.calls == 2


async def test_forgetting_one_key_keeps_the_others_and_drops_its_running_load() -> None:
    cache: TtlCache[str, object] = TtlCache(60)
    a, b = Loader("a"), Loader("b")
    a.release.set()
    b.release.set()
    assert await cache.get("a", a) == "a" and await cache.get("b", b) == "b"
    stale = Loader("old")
    cache.forget("a")
    running = asyncio.create_task(cache.get("a", stale))
    await asyncio.sleep(0)
    cache.forget("a")  # a write happened while that load was running: its answer must not be kept
    stale.release.set()
    assert await running == "old"
    fresh = Loader("new")
    fresh.release.set()
    assert await cache.get("a", fresh) == "new" and fresh.calls == 1
    assert await cache.get("b", b) == "b" and b.calls == 1  # the other key was never reloaded
