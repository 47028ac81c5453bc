"""SendGrid v3 Mail Send through the provider HTTP toolkit (API_FACTS §3).

Messages that share sender, reply-to, categories and body go out together: one personalization each (its
recipients, subject, headers, substitutions and our custom args), at most 1,000 personalizations and 1,000
recipients per request, no address twice in one request. 202 with `X-Message-Id` accepts every
personalization. Mail send is not idempotent, so the toolkit retries only connections never made; this
adapter also retries answers that prove nothing was accepted (429, 5xx), then classifies what is left.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from ionflux.core.errors import AuthFailed, InvalidRequest, IonfluxError, RateLimited
from ionflux.core.http import ProviderClient, ProviderProfile, RetryPolicy, Timeouts
from ionflux.email.addresses import Address
from ionflux.email.providers.base import Accepted, Account, OutboundMessage, Outcome, ProviderFailure
from ionflux.email.settings import SendGridSettings

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
NEVER_SENT_ERRORS = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
SENDGRID_MAIL = ProviderProfile(
    name="sendgrid", base_url="https://api.sendgrid.com", timeouts=Timeouts(total=60.0),
    retry=RetryPolicy(max_attempts=3),
)


def _address(a: Address) -> dict[str, str]:
    return {"email": a.email, "name": a.name} if a.name else {"email": a.email}


def _group_key(m: OutboundMessage) -> tuple[Any, ...]:
    return (m.sender, m.reply_to, m.text, m.html, tuple(m.tags))


def _personalization(m: OutboundMessage) -> dict[str, Any]:
    p: dict[str, Any] = {"to": [_address(a) for a in m.to], "subject": m.subject,
                         "custom_args": {"ionflux_message_id": m.id, "ionflux_workspace": m.workspace_id}}
    if m.cc:
        p["cc"] = [_address(a) for a in m.cc]
    if m.bcc:
        p["bcc"] = [_address(a) for a in m.bcc]
    if m.headers:
        p["headers"] = dict(m.headers)
    if m.substitutions:
        p["substitutions"] = dict(m.substitutions)
    return p


def plan_requests(messages: list[OutboundMessage]) -> list[list[int]]:
    """Indexes of `messages` per request, within SendGrid's per-request limits."""
    groups: dict[tuple[Any, ...], list[list[int]]] = {}
    seen: dict[int, set[str]] = {}
    counts: dict[int, int] = {}
    for index, m in enumerate(messages):
        addresses = {a.key for a in m.recipients}
        requests = groups.setdefault(_group_key(m), [])
        current = requests[-1] if requests else None
        if (current is None or len(current) >= MAX_PERSONALIZATIONS
                or counts[id(current)] + len(addresses) > MAX_RECIPIENTS or seen[id(current)] & addresses):
            current = []
            requests.append(current)
            seen[id(current)], counts[id(current)] = set(), 0
        current.append(index)
        seen[id(current)] |= addresses
        counts[id(current)] += len(addresses)
    return [r for requests in groups.values() for r in requests]


def body_for(messages: list[OutboundMessage]) -> dict[str, Any]:
    first = messages[0]
    content = []
    if first.text is not None:
        content.append({"type": "text/plain", "value": first.text})
    if first.html is not None:
        content.append({"type": "text/html", "value": first.html})
    body: dict[str, Any] = {"personalizations": [_personalization(m) for m in messages],
                            "from": _address(first.sender), "content": content}
    if first.reply_to:
        body["reply_to"] = _address(first.reply_to)
    if first.tags:
        body["categories"] = list(first.tags)
    return body


class SendGridProvider:
    name = "sendgrid"
    max_messages_per_call = 10_000
    needs_credential = True

    def __init__(self, settings: SendGridSettings | None = None, *, client: ProviderClient | None = None,
                 concurrency: int = 4) -> None:
        self.settings = settings or SendGridSettings()
        profile = replace(SENDGRID_MAIL, base_url=self.settings.base_url,
                          timeouts=Timeouts(total=self.settings.timeout))
        self.client = client or ProviderClient(profile)
        self._slots = asyncio.Semaphore(concurrency)
        self.requests_sent = 0

    async def send(self, account: Account, messages: list[OutboundMessage]) -> list[Outcome]:
        key = account.secrets.get("api_key")
        if not key:
            return [ProviderFailure("auth", "the SendGrid credential has no api_key")] * len(messages)
        outcomes: list[Outcome | None] = [None] * len(messages)

        async def one(indexes: list[int]) -> None:
            async with self._slots:
                outcome = await self._post(key, body_for([messages[i] for i in indexes]))
            for i in indexes:
                outcomes[i] = outcome

        await asyncio.gather(*(one(r) for r in plan_requests(messages)))
        return [o if o is not None else ProviderFailure("ambiguous", "no outcome") for o in outcomes]

    async def _post(self, key: str, body: dict[str, Any], attempts: int = 3) -> Outcome:
        for attempt in range(1, attempts + 1):
            self.requests_sent += 1
            try:
                response = await self.client.request("POST", "/v3/mail/send", json=body, credential=key,
                                                     idempotent=False)
            except IonfluxError as exc:
                failure = classify(exc)
                if failure.kind in ("unavailable", "throttled") and failure.status is not None and attempt < attempts:
                    await asyncio.sleep(min(failure.retry_after or 0.2 * 2 ** attempt, 5.0))
                    continue
                return failure
            if response.status_code != 202:
                return ProviderFailure("ambiguous", f"SendGrid answered {response.status_code}, expected 202")
            return Accepted(response.headers.get("x-message-id"))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.client.aclose()


def classify(exc: IonfluxError) -> ProviderFailure:
    status = exc.details.get("status")
    status = status if isinstance(status, int) else None
    retry_after = exc.details.get("retry_after")
    retry_after = float(retry_after) if isinstance(retry_after, int | float) else None
    body = str(exc.details.get("provider_body", ""))[:500]
    if isinstance(exc, RateLimited):
        return ProviderFailure("throttled", "SendGrid rate limit reached", retry_after=retry_after, status=status)
    if isinstance(exc, AuthFailed):
        return ProviderFailure("auth", f"SendGrid refused the API key ({status})", status=status)
    if isinstance(exc, InvalidRequest):
        return ProviderFailure("rejected", f"SendGrid rejected the request: {body}", status=status)
    if status is not None and status >= 500:
        return ProviderFailure("unavailable", f"SendGrid failed with {status}", retry_after=retry_after,
                               status=status)
    if exc.details.get("circuit") or exc.details.get("error") in NEVER_SENT_ERRORS \
            or exc.details.get("reason") == "connect_error":
        return ProviderFailure("unavailable", f"SendGrid could not be reached: {exc.message}")
    if exc.details.get("reason") in ("timeout", "connection_error"):
        return ProviderFailure("ambiguous", f"SendGrid did not answer ({exc.details.get('reason')}); "
                                            "the mail may have been accepted, so it is not re-sent")
    return ProviderFailure("rejected", f"SendGrid answered {status}: {body}", status=status)
