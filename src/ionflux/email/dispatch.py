"""Sending queued messages: claim, build, send through the workspace's provider chain, record the outcomes.

A message is claimed (a lease in `claimed_until`) before any provider sees it, so two workers never send it
twice; the lease is cleared with the outcome. A provider that was unreachable or answered 5xx accepted
nothing, so the same messages go to the secondary provider; a `throttled` or transient failure puts them back
in the queue for later; an `ambiguous` one (maybe accepted) is never re-sent. A message whose lease ran out
was in flight when a process died: it is failed as ambiguous by `expire_claims` rather than sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from ionflux.core.errors import IonfluxError, NotFound
from ionflux.core.models import utcnow
from ionflux.core.platform import Platform
from ionflux.email.addresses import Address
from ionflux.email.models import EmailBatch, EmailMessage, EmailWorkspaceSettings
from ionflux.email.providers.base import Accepted, Account, EmailProvider, OutboundMessage, Outcome, ProviderFailure
from ionflux.email.settings import EmailSettings
from ionflux.email.status import Observation, StatusRecorder, Tracked
from ionflux.email.suppressions import suppress

log = logging.getLogger("ionflux.email")
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Claimed:
    """A message leased for sending: what the providers get, and what recording its outcome needs."""

    message: OutboundMessage
    batch_id: str | None
    attempts: int


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    requeued: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)  # each message's status as this run recorded it


class Dispatcher:
    def __init__(self, platform: Platform, settings: EmailSettings, providers: dict[str, EmailProvider], *,
                 clock: Clock = utcnow, on_send: Callable[[str, str], Awaitable[None]] | None = None) -> None:
        self.platform = platform
        self.on_send = on_send  # called before a workspace's first send through a provider
        self.db = platform.db
        self.settings = settings
        self.providers = providers
        self.clock = clock

    async def chain(self, workspace_id: str) -> list[str]:
        """Primary then secondary provider: the workspace's choice if it made one, else the platform's."""
        async with self.db.tenant(workspace_id) as session:
            chosen = await session.get(EmailWorkspaceSettings, workspace_id)
        primary = chosen.provider if chosen else self.settings.provider
        secondary = chosen.fallback_provider if chosen else self.settings.fallback_provider
        return [primary] + ([secondary] if secondary and secondary != primary else [])

    async def account(self, workspace_id: str, provider: str) -> Account:
        """The workspace's own credential for `provider`, else the platform's (vault.resolve decides)."""
        try:
            resolved = await self.platform.vault.resolve(workspace_id, provider)
        except NotFound:
            if self.providers[provider].needs_credential:
                raise ProviderFailure("auth", f"no {provider} credential: set one with PUT /v1/credentials/{provider}"
                                              f" or IONFLUX_{provider.upper()}_…") from None
            return Account(workspace_id, {}, "none")
        except IonfluxError as exc:
            raise ProviderFailure("auth", f"the {provider} credential cannot be used: {exc.message}") from None
        return Account(workspace_id, dict(resolved.secrets), resolved.source)

    async def run(self, workspace_id: str, ids: Iterable[str], *, inline: bool = False,
                  prepared: Mapping[str, OutboundMessage] | None = None) -> DispatchReport:
        """Send the due messages among `ids`. `inline`: the request that queued them sends them now, even
        though their `next_attempt_at` still hides them from the worker (which is only the safety net).
        `prepared`: those messages as the request built them, so their rows are not read back.

        Chunk by chunk, each claimed just before its send (its lease covers that send only); while a provider
        has chunk N, the outcomes of chunk N-1 are recorded, so the sends never wait for that bookkeeping."""
        report = DispatchReport()
        ids = list(ids)
        step = self.settings.dispatch_chunk
        chain: list[str] = []
        accounts: dict[str, Account | ProviderFailure] = {}  # resolved once per run, not per chunk
        sent: tuple[list[Claimed], dict[str, tuple[str, Outcome]]] | None = None
        for start in range(0, len(ids), step):
            try:
                claims = await self._claim(workspace_id, ids[start:start + step], inline, prepared)
                if claims and not chain:
                    chain = await self.chain(workspace_id)
            except BaseException:
                if sent is not None:  # what went out is recorded before giving up
                    await self._record(workspace_id, *sent, report)
                raise
            sending = asyncio.create_task(self._send_chunk(workspace_id, claims, chain, accounts))
            try:
                if sent is not None:
                    await self._record(workspace_id, *sent, report)
                    sent = None
            except BaseException:
                results = await sending  # a send in flight is never abandoned, and is recorded if it can be
                with contextlib.suppress(Exception):
                    await self._record(workspace_id, claims, results, report)
                raise
            sent = (claims, await sending)
        if sent is not None:
            await self._record(workspace_id, *sent, report)
        return report

    async def _claim(self, workspace_id: str, ids: list[str], inline: bool,
                     prepared: Mapping[str, OutboundMessage] | None) -> list[Claimed]:
        """Lease the due messages among `ids` (one UPDATE … RETURNING); rows come back as column tuples, not
        ORM objects (a chunk is a thousand messages), and not at all when the caller has them in memory."""
        now = self.clock()
        lease = now + timedelta(seconds=self.settings.claim_seconds)
        due = EmailMessage.next_attempt_at.is_not(None) if inline else EmailMessage.next_attempt_at <= now
        claim = (update(EmailMessage)
                 .where(EmailMessage.id.in_(ids), EmailMessage.status == "queued",
                        EmailMessage.claimed_until.is_(None), due)
                 .values(claimed_until=lease, attempts=EmailMessage.attempts + 1)
                 .execution_options(synchronize_session=False))
        async with self.db.tenant(workspace_id) as session:
            if prepared is not None:
                rows = (await session.execute(claim.returning(EmailMessage.id, EmailMessage.batch_id,
                                                              EmailMessage.attempts))).all()
                return [Claimed(prepared[r.id], r.batch_id, r.attempts) for r in rows]
            rows = (await session.execute(claim.returning(*_SENDING))).all()
            batch_ids = {r.batch_id for r in rows if r.batch_id}
            batches = {b.id: b for b in (await session.execute(
                select(EmailBatch.id, EmailBatch.text, EmailBatch.html).where(EmailBatch.id.in_(batch_ids)))).all()
            } if batch_ids else {}
        return [Claimed(_outbound(r, batches.get(r.batch_id or "")), r.batch_id, r.attempts) for r in rows]

    async def _send_chunk(self, workspace_id: str, claims: list[Claimed], chain: list[str],
                          accounts: dict[str, Account | ProviderFailure]) -> dict[str, tuple[str, Outcome]]:
        results: dict[str, tuple[str, Outcome]] = {}
        pending = [c.message for c in claims]
        for provider_name in chain:
            if not pending:
                break
            outcomes = await self._send_via(workspace_id, provider_name, pending, accounts)
            for message, outcome in zip(pending, outcomes, strict=True):
                results[message.id] = (provider_name, outcome)
            # Only what was certainly not accepted goes to the next provider.
            pending = [m for m in pending if _unavailable(results[m.id][1])]
        return results

    async def _send_via(self, workspace_id: str, name: str, messages: list[OutboundMessage],
                        accounts: dict[str, Account | ProviderFailure]) -> list[Outcome]:
        provider = self.providers.get(name)
        if provider is None:
            return [ProviderFailure("auth", f"email provider {name!r} is not available in this process")] * len(
                messages)
        if name not in accounts:
            try:
                accounts[name] = await self.account(workspace_id, name)
            except ProviderFailure as failure:
                accounts[name] = failure
        account = accounts[name]
        if isinstance(account, ProviderFailure):
            return [account] * len(messages)
        if self.on_send is not None:
            await self.on_send(workspace_id, name)
        outcomes: list[Outcome] = []
        step = provider.max_messages_per_call
        for start in range(0, len(messages), step):
            outcomes.extend(await provider.send(account, messages[start:start + step]))
        return outcomes

    async def _record(self, workspace_id: str, claims: list[Claimed], results: dict[str, tuple[str, Outcome]],
                      report: DispatchReport) -> None:
        """Outcomes in a few statements per chunk: one UPDATE … RETURNING status per provider request for the
        accepted messages (they share its provider message id; what it returns is their status now, a provider
        event may have landed meanwhile), one executemany by primary key for the others, one guarded UPDATE per
        status move (such an event is never overwritten), and the history rows and events in multi-row inserts."""
        if not results:
            return
        now = self.clock()
        claimed = {c.message.id: c for c in claims}
        table = cast(Table, EmailMessage.__table__)
        accepted: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for message_id, (provider, outcome) in results.items():
            if isinstance(outcome, Accepted):
                accepted[(provider, outcome.provider_message_id)].append(message_id)
        async with self.db.tenant(workspace_id) as session:
            current: dict[str, str] = {}
            for (provider, provider_message_id), ids in accepted.items():
                current.update(dict((await session.execute(
                    update(table).where(table.c.workspace_id == workspace_id, table.c.id.in_(ids))
                    .values(claimed_until=None, provider=provider, provider_message_id=provider_message_id,
                            next_attempt_at=None, last_error=None)
                    .returning(table.c.id, table.c.status))).all()))
            others = [message_id for message_id in results if message_id not in current]
            if others:
                current.update(dict((await session.execute(select(EmailMessage.id, EmailMessage.status).where(
                    EmailMessage.id.in_(others)))).all()))
            recorder = StatusRecorder(session, workspace_id)
            changes: list[dict[str, Any]] = []
            moves: dict[tuple[str, str], list[str]] = defaultdict(list)
            bounced: list[tuple[str, str, str | None, str | None]] = []
            sent = {name: Observation("sent", now, provider=name) for name in {p for p, _ in results.values()}}
            for message_id, (provider, outcome) in results.items():
                claim = claimed[message_id]
                tracked = Tracked(message_id, claim.batch_id, claim.message.tags, current[message_id], now)
                if isinstance(outcome, Accepted):
                    recorder.record(tracked, sent[provider])
                    for recipient, reason in outcome.refused:
                        recorder.record(tracked, Observation("bounced", now, recipient, provider, {"reason": reason}))
                        bounced.append((recipient, "bounce", reason, message_id))
                    report.sent += 1
                    report.by_provider[provider] = report.by_provider.get(provider, 0) + 1
                else:
                    change: dict[str, Any] = {"id": message_id, "claimed_until": None,
                                              "last_error": f"{provider}: {outcome.message}"[:2000]}
                    transient = outcome.kind in ("throttled", "unavailable")
                    if transient and claim.attempts < self.settings.max_attempts:
                        wait = outcome.retry_after or self.settings.retry_base_seconds * 2 ** (claim.attempts - 1)
                        change["next_attempt_at"] = now + timedelta(seconds=min(wait, 3600))
                        report.requeued += 1
                    else:
                        change["next_attempt_at"] = None
                        recorder.record(tracked, Observation("failed", now, provider=provider,
                                                             detail={"kind": outcome.kind, "error": outcome.message}))
                        report.failed += 1
                    changes.append(change)
                report.statuses[message_id] = tracked.status
                if tracked.status != current[message_id]:
                    moves[(current[message_id], tracked.status)].append(message_id)
            if changes:
                await session.execute(_update_by_id(workspace_id, ("claimed_until", "last_error", "next_attempt_at")),
                                      [{f"v_{k}": v for k, v in c.items()} for c in changes])
            for (previous, new), ids in moves.items():
                await session.execute(
                    update(EmailMessage).where(EmailMessage.id.in_(ids), EmailMessage.status == previous)
                    .values(status=new, status_at=now).execution_options(synchronize_session=False))
            if bounced:
                await suppress(session, workspace_id, bounced)
            await recorder.flush()

    async def expire_claims(self, workspace_id: str, ids: list[str]) -> int:
        """Fail messages whose lease ran out mid-send (a process died): they may have gone, so never re-send."""
        now = self.clock()
        async with self.db.tenant(workspace_id) as session:
            recorder = StatusRecorder(session, workspace_id)
            rows = (await session.scalars(select(EmailMessage).where(
                EmailMessage.id.in_(ids), EmailMessage.status == "queued", EmailMessage.claimed_until < now))).all()
            for row in rows:
                row.claimed_until, row.next_attempt_at = None, None
                row.last_error = "the send was interrupted; it may have gone out, so it is not repeated"
                recorder.record(row, Observation("failed", now, detail={"kind": "ambiguous", "error": row.last_error}))
            await recorder.flush()
        return len(rows)


def _unavailable(outcome: Outcome) -> bool:
    return isinstance(outcome, ProviderFailure) and outcome.kind == "unavailable"


_SENDING = (EmailMessage.id, EmailMessage.workspace_id, EmailMessage.batch_id, EmailMessage.sender, EmailMessage.to,
            EmailMessage.cc, EmailMessage.bcc, EmailMessage.reply_to, EmailMessage.subject, EmailMessage.text,
            EmailMessage.html, EmailMessage.substitutions, EmailMessage.headers, EmailMessage.tags,
            EmailMessage.attempts)


def _update_by_id(workspace_id: str, columns: tuple[str, ...]) -> Any:
    """A Core UPDATE by id for executemany (no ORM bookkeeping per row); the workspace is in its WHERE."""
    table = cast(Table, EmailMessage.__table__)
    return (update(table).where(table.c.workspace_id == workspace_id, table.c.id == bindparam("v_id"))
            .values({name: bindparam(f"v_{name}") for name in columns}))


def _outbound(row: Any, batch: Any) -> OutboundMessage:
    """A claimed row (the `_SENDING` columns) and its batch's body, as the providers take them."""
    return OutboundMessage(
        id=row.id, workspace_id=row.workspace_id, sender=Address.from_dict(row.sender),
        to=[Address.from_dict(a) for a in row.to], cc=[Address.from_dict(a) for a in row.cc],
        bcc=[Address.from_dict(a) for a in row.bcc],
        reply_to=Address.from_dict(row.reply_to) if row.reply_to else None, subject=row.subject,
        text=row.text if row.text is not None or batch is None else batch.text,
        html=row.html if row.html is not None or batch is None else batch.html,
        substitutions=dict(row.substitutions or {}), headers=dict(row.headers or {}), tags=list(row.tags or []),
    )
