"""SMTP with `aiosmtplib`: pooled connections (reused across messages), implicit TLS or STARTTLS as configured.

Each message is sent step by step (MAIL, RCPT per recipient, DATA) so the outcome is exact: a connection that
fails before DATA sent nothing (safe to retry or fail over); one that fails during DATA may have delivered
(`ambiguous`, never re-sent); recipients refused at RCPT are reported per recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiosmtplib

from ionflux.email.providers.base import (
    Accepted,
    Account,
    FailureKind,
    OutboundMessage,
    Outcome,
    ProviderFailure,
)
from ionflux.email.providers.mime import build_mime, message_id_header
from ionflux.email.settings import SmtpSettings

_NOT_SENT = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError)


class SmtpPool:
    """At most `size` open connections for one login; idle ones are reused, broken ones dropped."""

    def __init__(self, settings: SmtpSettings, username: str | None, password: str | None) -> None:
        self.settings = settings
        self.username, self.password = username, password
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.pool_size)
        self.opened = 0  # connections made, for tests and the bench

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, username=self.username, password=self.password, use_tls=s.use_tls,
            start_tls=s.start_tls, validate_certs=s.validate_certs, cert_bundle=s.cert_bundle, timeout=s.timeout,
            local_hostname=s.local_hostname,
        )
        await client.connect()
        self.opened += 1
        return client

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            healthy = False
            try:
                yield client
                healthy = client.is_connected
            finally:
                if healthy:
                    self._idle.append(client)
                else:
                    client.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await client.quit()
            client.close()


class SmtpProvider:
    name = "smtp"
    max_messages_per_call = 1000
    needs_credential = False

    def __init__(self, settings: SmtpSettings | None = None) -> None:
        self.settings = settings or SmtpSettings()
        self._pools: dict[tuple[str | None, str | None], SmtpPool] = {}

    def pool(self, account: Account) -> SmtpPool:
        key = (account.secrets.get("username"), account.secrets.get("password"))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = SmtpPool(self.settings, *key)
        return pool

    async def send(self, account: Account, messages: list[OutboundMessage]) -> list[Outcome]:
        pool = self.pool(account)
        return list(await asyncio.gather(*(self._send_one(pool, m) for m in messages)))

    async def _send_one(self, pool: SmtpPool, message: OutboundMessage) -> Outcome:
        for attempt in (1, 2):  # an idle connection the server closed fails at MAIL: reconnect once
            try:
                async with pool.connection() as client:
                    return await self._transaction(client, message)
            except aiosmtplib.SMTPAuthenticationError as exc:
                return ProviderFailure("auth", f"the SMTP server refused the login ({exc.code})", status=exc.code)
            except _NotSent as exc:
                if attempt == 2:
                    return ProviderFailure("unavailable", f"the SMTP server could not be used: {exc}")
            except _NOT_SENT as exc:
                if attempt == 2 or isinstance(exc, aiosmtplib.SMTPConnectError):
                    return ProviderFailure("unavailable", f"the SMTP server could not be reached: "
                                                          f"{type(exc).__name__}")
            except aiosmtplib.SMTPException as exc:  # the session could not be set up (e.g. no STARTTLS offered)
                return ProviderFailure("unavailable", f"the SMTP session could not be opened: {exc}")
        raise AssertionError("unreachable")

    async def _transaction(self, client: aiosmtplib.SMTP, message: OutboundMessage) -> Outcome:
        try:
            await client.mail(message.sender.email)
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return _refusal(exc, "sender")
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _NotSent(str(exc)) from None
        refused: list[tuple[str, str]] = []
        accepted = 0
        for rcpt in message.recipients:
            try:
                await client.rcpt(rcpt.email)
                accepted += 1
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append((rcpt.email, f"{exc.code} {exc.message}"))
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                raise _NotSent(str(exc)) from None
        if not accepted:
            await _reset(client)
            detail = "; ".join(f"{r}: {why}" for r, why in refused)
            return ProviderFailure("rejected", f"every recipient was refused ({detail})")
        try:
            await client.data(build_mime(message))
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return _refusal(exc, "message")
        except (aiosmtplib.SMTPException, ConnectionError, OSError) as exc:
            client.close()
            return ProviderFailure("ambiguous", f"the connection failed during DATA ({type(exc).__name__}); "
                                                "the message may have been delivered, so it is not re-sent")
        return Accepted(message_id_header(message.id, message.sender), refused)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class _NotSent(Exception):
    """The connection broke before DATA: nothing was sent."""


async def _reset(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError, OSError):
        await client.rset()


def _refusal(exc: aiosmtplib.SMTPResponseException, what: str) -> ProviderFailure:
    kind: FailureKind = "throttled" if 400 <= exc.code < 500 else "rejected"  # 4xx is transient: try later
    return ProviderFailure(kind, f"the SMTP server refused the {what}: {exc.code} {exc.message}", status=exc.code)
