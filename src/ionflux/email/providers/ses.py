"""AWS SES v2 through boto3 (`sesv2`): SendEmail per message, SendBulkEmail for templated batch members.

boto3 is synchronous, so every call runs on this provider's own thread pool (`concurrency` threads), never
on the event loop. botocore's own retries are off (`total_max_attempts=1`): SendEmail is not idempotent, so
this adapter decides what may be repeated — throttling (`TooManyRequestsException`) and 5xx answers, which
accepted nothing, are retried with exponential backoff (every caller of the account pausing meanwhile);
a call that may have been accepted (read timeout, connection dropped) is `ambiguous` and never repeated.

Sending is paced by the account's quota (`ses_quota.py`, from GetAccount). Credentials come from the vault
per account (`access_key_id`, `secret_access_key`, optional `session_token` and `region`): the workspace's
own override the platform's; one boto3 client per credential and region is kept.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from ionflux.email.providers.base import Accepted, Account, OutboundMessage, Outcome, ProviderFailure
from ionflux.email.providers.ses_quota import AccountAllowance, SendQuota
from ionflux.email.providers.ses_wire import bulk_failure, bulk_key, classify, send_bulk_args, send_email_args
from ionflux.email.settings import SesSettings

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

log = logging.getLogger("ionflux.email.ses")
MAX_CLIENTS = 128


@dataclass(frozen=True)
class SesCredential:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str

    @property
    def fingerprint(self) -> str:
        """Names the account in caches without keeping a readable secret as a key."""
        raw = "\x00".join((self.access_key_id, self.secret_access_key, self.session_token or "", self.region))
        return hashlib.sha256(raw.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"SesCredential(region={self.region!r})"


class SesProvider:
    name = "ses"
    max_messages_per_call = 1000
    needs_credential = True

    def __init__(self, settings: SesSettings | None = None, *, session: boto3.session.Session | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.settings = settings or SesSettings()
        self._session = session or boto3.session.Session()
        self._sleep = sleep
        self._executor = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="ionflux-ses")
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._clients: OrderedDict[str, SESV2Client] = OrderedDict()
        self._allowances: dict[str, AccountAllowance] = {}
        self._setup = asyncio.Lock()  # boto3 sessions are not thread-safe: clients are made one at a time
        self.calls: Counter[str] = Counter()  # per operation, for tests and the bench

    # -- the EmailProvider protocol -------------------------------------------------------------------
    async def send(self, account: Account, messages: list[OutboundMessage]) -> list[Outcome]:
        credential = self.credential(account)
        if credential is None:
            return [ProviderFailure("auth", "the SES credential needs access_key_id and secret_access_key")
                    ] * len(messages)
        try:
            client = await self.client(credential)
            allowance = await self.allowance(credential, client)
        except ProviderFailure as failure:
            return [failure] * len(messages)
        if not allowance.quota.sending_enabled:
            return [ProviderFailure("unavailable", "SES sending is disabled for this account")] * len(messages)
        outcomes: list[Outcome | None] = [None] * len(messages)
        work: list[Awaitable[None]] = []
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, message in enumerate(messages):
            key = bulk_key(message) if self.settings.bulk else None
            if key is None:
                work.append(self._single(client, allowance, messages, index, outcomes))
            else:
                groups.setdefault(key, []).append(index)
        size = min(self.settings.bulk_size, allowance.burst)
        for indexes in groups.values():
            if len(indexes) == 1:
                work.append(self._single(client, allowance, messages, indexes[0], outcomes))
                continue
            for start in range(0, len(indexes), size):
                work.append(self._bulk(client, allowance, messages, indexes[start:start + size], outcomes))
        await asyncio.gather(*work)
        return [o if o is not None else ProviderFailure("ambiguous", "no outcome") for o in outcomes]

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            client.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- accounts -------------------------------------------------------------------------------------
    def credential(self, account: Account) -> SesCredential | None:
        key_id, secret = account.secrets.get("access_key_id"), account.secrets.get("secret_access_key")
        if not key_id or not secret:
            return None
        return SesCredential(key_id, secret, account.secrets.get("session_token") or None,
                             account.secrets.get("region") or self.settings.region)

    async def client(self, credential: SesCredential) -> SESV2Client:
        found = self._clients.get(credential.fingerprint)
        if found is not None:
            self._clients.move_to_end(credential.fingerprint)
            return found
        async with self._setup:
            found = self._clients.get(credential.fingerprint)
            if found is None:
                found = await self._in_thread(self._make_client, credential)
                self._clients[credential.fingerprint] = found
                while len(self._clients) > MAX_CLIENTS:
                    self._clients.popitem(last=False)[1].close()
            return found

    def _make_client(self, credential: SesCredential) -> SESV2Client:
        s = self.settings
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=s.timeout, read_timeout=s.timeout,
                        max_pool_connections=s.concurrency)
        return self._session.client(
            "sesv2", region_name=credential.region, endpoint_url=s.base_url, config=config,
            aws_access_key_id=credential.access_key_id, aws_secret_access_key=credential.secret_access_key,
            aws_session_token=credential.session_token)

    async def allowance(self, credential: SesCredential, client: SESV2Client) -> AccountAllowance:
        """The account's allowance, read from GetAccount when missing or older than `quota_refresh_seconds`."""
        current = self._allowances.get(credential.fingerprint)
        if current is not None and current.age() < self.settings.quota_refresh_seconds:
            return current
        quota = await self._read_quota(client)
        fresh = AccountAllowance(quota, rate_override=self.settings.max_send_rate)
        if current is not None and current.rate == fresh.rate:
            fresh.limiter = current.limiter  # keep the bucket's state across re-reads
        self._allowances[credential.fingerprint] = fresh
        return fresh

    async def _read_quota(self, client: SESV2Client) -> SendQuota:
        try:
            self.calls["GetAccount"] += 1
            return SendQuota.from_get_account(await self._in_thread(client.get_account))
        except Exception as exc:
            failure, _ = classify(exc)
            if failure.kind == "auth":
                raise failure from None
            log.warning("SES GetAccount could not be read; pacing at the configured rate",
                        extra={"error": failure.message})
            rate = self.settings.max_send_rate or self.settings.default_send_rate
            return SendQuota(max_send_rate=rate, max_24_hour_send=-1, source="settings")

    # -- calls ----------------------------------------------------------------------------------------
    async def _single(self, client: SESV2Client, allowance: AccountAllowance, messages: list[OutboundMessage],
                      index: int, outcomes: list[Outcome | None]) -> None:
        message = messages[index]
        recipients = len(message.recipients)
        if not allowance.take_daily(recipients):
            outcomes[index] = ProviderFailure("unavailable", "the SES account's 24-hour quota is used up")
            return
        args = send_email_args(message, self.settings.configuration_set)
        result = await self._call(allowance, recipients, "SendEmail", client.send_email, args)
        if isinstance(result, ProviderFailure):
            if result.kind != "ambiguous":
                allowance.give_back(recipients)
            outcomes[index] = result
        else:
            outcomes[index] = Accepted(str(result.get("MessageId") or "") or None)

    async def _bulk(self, client: SESV2Client, allowance: AccountAllowance, messages: list[OutboundMessage],
                    indexes: list[int], outcomes: list[Outcome | None]) -> None:
        fitting = []
        for i in indexes:  # what the 24-hour quota still allows goes; the rest is left for later or the fallback
            if allowance.take_daily(len(messages[i].recipients)):
                fitting.append(i)
            else:
                outcomes[i] = ProviderFailure("unavailable", "the SES account's 24-hour quota is used up")
        if not fitting:
            return
        indexes = fitting
        group = [messages[i] for i in indexes]
        recipients = sum(len(m.recipients) for m in group)
        args = send_bulk_args(group, self.settings.configuration_set)
        result = await self._call(allowance, recipients, "SendBulkEmail", client.send_bulk_email, args)
        if isinstance(result, ProviderFailure):
            if result.kind != "ambiguous":
                allowance.give_back(recipients)
            for i in indexes:
                outcomes[i] = result
            return
        entries = list(result.get("BulkEmailEntryResults") or [])
        for position, i in enumerate(indexes):
            entry = entries[position] if position < len(entries) else {}
            status = str(entry.get("Status") or "")
            if status == "SUCCESS":
                outcomes[i] = Accepted(str(entry.get("MessageId") or "") or None)
            elif not entry:
                outcomes[i] = ProviderFailure("ambiguous", "SES returned no result for this entry")
            else:
                allowance.give_back(len(messages[i].recipients))
                outcomes[i] = bulk_failure(status, entry.get("Error"))

    async def _call(self, allowance: AccountAllowance, recipients: int, operation: str,
                    method: Callable[..., Any], args: dict[str, Any]) -> dict[str, Any] | ProviderFailure:
        retries = self.settings.throttle_retries
        for attempt in range(retries + 1):
            await allowance.pace(recipients)
            async with self._slots:
                self.calls[operation] += 1
                try:
                    return dict(await self._in_thread(functools.partial(method, **args)))
                except Exception as exc:
                    failure, retryable = classify(exc)
            if not retryable or attempt == retries:
                return failure
            jitter = 0.5 + random.random() / 2  # noqa: S311 - spreads retries, not a secret
            wait = min(self.settings.backoff_base * 2 ** attempt, 20.0) * jitter
            if failure.kind == "throttled":
                allowance.pause(wait)
            log.info("SES call retried", extra={"operation": operation, "attempt": attempt + 1,
                                                "error": failure.message})
            await self._sleep(wait)
        raise AssertionError("unreachable")

    async def _in_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(call, *args))

