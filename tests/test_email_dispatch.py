"""Dispatch in chunks: each chunk's send overlaps the recording of the one before, and every outcome is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ionflux.core.platform import Platform
from ionflux.email.models import EmailStatusChange
from ionflux.email.providers.base import Accepted, Account, EmailProvider, OutboundMessage, Outcome, ProviderFailure
from ionflux.email.schemas import BatchRequest, BatchResult
from ionflux.email.settings import EmailSettings
from tests.conftest import WorkspaceHandle
from tests.email_support import SENDER, email_env


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class ScriptedProvider:
    """Accepts every message except those of its second call, which it rejects; logs when calls start and end."""

    name = "smtp"
    max_messages_per_call = 1000
    needs_credential = False

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.calls: list[list[str]] = []

    async def send(self, account: Account, messages: list[OutboundMessage]) -> list[Outcome]:
        call = len(self.calls)
        self.calls.append([m.to[0].email for m in messages])
        self.log.append(f"send {call} start")
        outcome: Outcome = ProviderFailure("rejected", "no") if call == 1 else Accepted(f"pm-{call}")
        self.log.append(f"send {call} end")
        return [outcome] * len(messages)

    async def aclose(self) -> None:
        return None


async def test_chunks_overlap_send_and_recording(platform: Platform, workspace: WorkspaceHandle) -> None:
    log: list[str] = []
    provider = ScriptedProvider(log)
    providers: dict[str, EmailProvider] = {"smtp": provider}
    settings = EmailSettings(worker_poll_seconds=0.05, dispatch_chunk=3)
    async with email_env(platform, workspace.id, workspace.token, settings=settings,
                         providers=lambda _sink: providers) as env:
        original = env.plugin.dispatcher._record
        chunk = iter(range(10))

        async def spied(*args: Any) -> None:
            number = next(chunk)
            log.append(f"record {number} start")
            await original(*args)
            log.append(f"record {number} end")

        env.plugin.dispatcher._record = spied  # type: ignore[method-assign]
        response = await env.client.post("/v1/email/batch", headers=env.headers, json={
            "from": SENDER, "subject": "Hi {{ name }}", "text": "Hello {{ name }}",
            "recipients": [{"to": f"u{i}@example.com", "template_data": {"name": f"U{i}"}} for i in range(7)]})
        assert response.status_code == 200, response.text
        result = response.json()
    assert [len(call) for call in provider.calls] == [3, 3, 1]
    # the send of chunk N starts while chunk N-1 is being recorded, and each chunk is recorded once
    assert log.index("send 1 start") < log.index("record 0 end")
    assert log.index("send 2 start") < log.index("record 1 end")
    assert [entry for entry in log if entry.startswith("record") and entry.endswith("end")] == [
        "record 0 end", "record 1 end", "record 2 end"]
    statuses = [r["status"] for r in result["results"]]
    assert statuses == ["sent"] * 3 + ["failed"] * 3 + ["sent"]
    async with platform.db.tenant(workspace.id) as session:
        history = (await session.execute(select(EmailStatusChange.message_id, EmailStatusChange.status)
                                         .order_by(EmailStatusChange.seq))).all()
    by_message: dict[str, list[str]] = {}
    for message_id, status in history:
        by_message.setdefault(message_id, []).append(status)
    assert [by_message[r["message_id"]] for r in result["results"]] == \
        [["queued", "sent"]] * 3 + [["queued", "failed"]] * 3 + [["queued", "sent"]]
    types = [e.type.rsplit(".", 1)[1] for e in await env.events()]
    assert sorted(types) == sorted(["queued"] * 7 + ["sent"] * 4 + ["failed"] * 3)


async def test_batch_replay_and_worker_takeover_after_a_lost_request(platform: Platform,
                                                                    workspace: WorkspaceHandle) -> None:
    clock = Clock()
    settings = EmailSettings(worker_poll_seconds=3600)  # the background worker stays idle: rounds run by hand
    async with email_env(platform, workspace.id, workspace.token, settings=settings, clock=clock) as env:
        body: dict[str, Any] = {"from": SENDER, "subject": "Hi {{ n }}", "text": "t {{ n }}", "idempotency_key": "b-1",
                                "recipients": [{"to": f"r{i}@example.com", "template_data": {"n": i}}
                                               for i in range(4)]}
        first = (await env.client.post("/v1/email/batch", headers=env.headers, json=body)).json()
        again = (await env.client.post("/v1/email/batch", headers=env.headers, json=body)).json()
        assert again["idempotent_replay"] is True and again["batch_id"] == first["batch_id"]
        assert [r["message_id"] for r in again["results"]] == [r["message_id"] for r in first["results"]]
        assert {r["status"] for r in again["results"]} == {"sent"} and len(env.sink.messages) == 4

        # A request that dies after accepting (rows committed) but before dispatching: the worker sends it later.
        lost = BatchRequest.model_validate({**body, "idempotency_key": "b-2"})
        queued = await env.plugin.service.batches._accept(workspace.id, lost)
        assert not isinstance(queued, BatchResult) and len(queued.prepared) == 4
        assert await env.plugin.worker.run_once() == 0  # hidden while the request could still send it
        clock.now += timedelta(seconds=settings.claim_seconds + 1)
        assert await env.plugin.worker.run_once() == 4
        view = (await env.client.get(f"/v1/email/batches/{queued.batch_id}", headers=env.headers)).json()
        assert {r["status"] for r in view["results"]} == {"sent"} and len(env.sink.messages) == 8
        assert await env.plugin.worker.run_once() == 0 and len(env.sink.messages) == 8  # sent once
