"""Throughput and pair pacing: the per-number limiter slows down on Meta's 130429 and every caller waits, so a
storm ends with every message sent; 131056 holds that recipient; our own pair pacing refuses before Meta."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ionflux.messaging.pacing import NumberPacer, PairPacer
from tests import whatsapp_fixtures
from tests.whatsapp_fixtures import USER, WaEnv

wa_env = whatsapp_fixtures.wa_env  # the shared fixture, used by name
# Pacing does not depend on the database: these run on SQLite only (the rest of the suite covers both).
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_throttled_number_halves_its_rate_once_a_second_and_creeps_back() -> None:
    clock = Clock()
    pacer = NumberPacer(80.0, clock=clock)
    pacer.configure("whatsapp:1", 80.0)
    pacer.configure("whatsapp:2", 20.0)  # another number keeps its own rate
    assert pacer.throttled("whatsapp:1", None) == 0.25
    assert pacer.current_rate("whatsapp:1") == 40.0
    assert pacer.throttled("whatsapp:1", None) == 0.5  # a second strike within the second: longer hold, same rate
    assert pacer.current_rate("whatsapp:1") == 40.0
    clock.now += 1.0
    pacer.throttled("whatsapp:1", 2.0)  # a Retry-After, when given, is the hold
    assert pacer.current_rate("whatsapp:1") == 20.0 and pacer.current_rate("whatsapp:2") == 20.0
    ok = httpx.Response(200)
    for _ in range(200):
        pacer.settle("whatsapp:1", 1.0, ok)
    assert pacer.current_rate("whatsapp:1") == 80.0  # recovered, never above the number's own limit


@sqlite_only
@pytest.mark.parametrize("wa_env", [{"sim_mps": 10.0, "env": {"RATE_LIMIT_RETRIES": "8"}}], indirect=True)
async def test_a_429_storm_is_paced_and_every_message_goes(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    results = await asyncio.gather(*[wa_env.send(to=USER, type="text", text={"body": f"m{i}"}) for i in range(40)])
    assert [r.status_code for r in results] == [201] * 40, [r.text for r in results if r.status_code != 201][:1]
    stats = wa_env.sim.stats
    assert stats.sent == 40
    assert 0 < stats.throttled < 40  # the storm happened, and the number slowed down instead of hammering
    assert wa_env.service.cloud.numbers.current_rate("whatsapp:106540352242922") < 80.0


@sqlite_only
@pytest.mark.parametrize("wa_env", [{"pair_rate": (2.0, 60.0), "env": {
    "PAIR_INTERVAL_SECONDS": "0.3", "SEND_TIMEOUT_SECONDS": "1.5"}}], indirect=True)
async def test_metas_pair_rate_limit_holds_the_recipient_then_answers_rate_limited(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    for text in ("one", "two"):
        assert (await wa_env.send(to=USER, type="text", text={"body": text})).status_code == 201
    third = await wa_env.send(to=USER, type="text", text={"body": "three"})
    assert third.status_code == 429
    error = third.json()["error"]
    assert error["code"] == "RATE_LIMITED" and error["details"]["meta_code"] == 131056
    assert error["details"]["retry_after"] > 0
    assert 1 <= wa_env.sim.stats.pair_limited <= 6  # retried after holds, not in a tight loop


@sqlite_only
@pytest.mark.parametrize("wa_env", [{"env": {"PAIR_MESSAGES": "2", "PAIR_INTERVAL_SECONDS": "60",
                                             "SEND_TIMEOUT_SECONDS": "1"}}], indirect=True)
async def test_our_pair_pacing_refuses_before_meta_is_asked(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    for text in ("one", "two"):
        assert (await wa_env.send(to=USER, type="text", text={"body": text})).status_code == 201
    third = await wa_env.send(to=USER, type="text", text={"body": "three"})
    assert third.status_code == 429 and third.json()["error"]["code"] == "RATE_LIMITED"
    assert wa_env.sim.stats.sent == 2 and wa_env.sim.stats.pair_limited == 0
    other = await wa_env.send(to="447700900999", type="text", text={"body": "x"})
    assert other.json()["error"]["code"] == "OUTSIDE_SERVICE_WINDOW"  # other users are not held


async def test_pair_buckets_of_idle_recipients_are_forgotten() -> None:
    clock = Clock()
    pairs = PairPacer(2.0, 6.0, clock=clock, prune_every=3)
    await pairs.acquire(PairPacer.key("1", "a"))
    await pairs.acquire(PairPacer.key("1", "b"))
    assert pairs.tracked() == 2
    clock.now += 6.0  # both drained: a full burst again
    await pairs.acquire(PairPacer.key("1", "c"))  # the third acquisition prunes first
    assert pairs.tracked() == 1
