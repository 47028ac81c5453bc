"""`WhatsAppCloudClient`: the Graph API adapter (send, message templates) on the provider HTTP toolkit.

Sends are POSTs Meta cannot deduplicate, so the toolkit never retries them on its own (a 5xx may have
sent the message). A send Meta refused for a rate limit (130429 throughput, 131056 pair rate) was not
sent, so it is retried here, paced: the number's limiter slows down and holds every caller, the pair's
limiter holds that recipient. Meta's error codes become ours (see `meta_error`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry

from ionflux.core.errors import (
    InvalidRequest,
    IonfluxError,
    OutsideServiceWindow,
    ProviderApiError,
    RateLimited,
)
from ionflux.core.http.catalogue import WHATSAPP_CLOUD
from ionflux.core.http.client import ProviderClient
from ionflux.core.http.profile import Timeouts
from ionflux.messaging.pacing import NumberPacer, PairPacer, number_key
from ionflux.messaging.settings import WhatsAppSettings

THROUGHPUT, PAIR_RATE, MARKETING_LIMIT, REENGAGEMENT = 130429, 131056, 131049, 131047
TEMPLATE_ERRORS = range(132000, 133000)  # template missing, paused, parameter mismatch, …
WINDOW_HINT = "send an approved template (type 'template') instead; the window reopens when the user writes"


@dataclass(frozen=True)
class MetaError:
    code: int | None
    message: str
    details: str | None


@dataclass(frozen=True)
class SendResult:
    wamid: str
    wa_id: str | None
    message_status: str | None


def meta_error(exc: IonfluxError) -> MetaError:
    """Meta's `{"error": {code, message, error_data: {details}}}` from the (redacted) body the toolkit kept."""
    body = str(exc.details.get("provider_body") or "")
    try:
        doc = json.loads(body)
        error = doc.get("error") if isinstance(doc, dict) else None
    except ValueError:
        error = None
    if isinstance(error, dict):
        code = str(error.get("code", ""))
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return MetaError(int(code) if code.isdigit() else None, str(error.get("message", "")),
                         str(details) if details else None)
    found = re.search(r'"code"\s*:\s*"?(\d+)', body)
    return MetaError(int(found.group(1)) if found else None, "", None)


def map_meta_error(exc: IonfluxError, err: MetaError) -> IonfluxError:
    """Our error for a refused Graph call: codes first (Meta's advice), the HTTP status otherwise."""
    details = {**exc.details, "meta_code": err.code}
    detail = f": {err.details or err.message}" if (err.details or err.message) else ""
    if err.code in (THROUGHPUT, PAIR_RATE, MARKETING_LIMIT):
        what = {THROUGHPUT: "the number's throughput limit", PAIR_RATE: "the limit of messages to this user",
                MARKETING_LIMIT: "Meta's marketing-message limit for this user"}[err.code]
        return RateLimited(f"WhatsApp refused the message: {what} was reached; try again later", details=details)
    if err.code == REENGAGEMENT:
        return OutsideServiceWindow(f"WhatsApp refused a free-form message outside the 24-hour customer-service "
                                    f"window (131047); {WINDOW_HINT}", field="type", details=details)
    if err.code is not None and err.code in TEMPLATE_ERRORS:
        return InvalidRequest(f"WhatsApp refused the template ({err.code}){detail}", field="template", details=details)
    if isinstance(exc, InvalidRequest | ProviderApiError) and err.code is not None:
        return type(exc)(f"WhatsApp refused the request ({err.code}){detail}", field=exc.field, details=details)
    exc.details.update(details)
    return exc


class WhatsAppCloudClient:
    def __init__(self, settings: WhatsAppSettings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.version = settings.api_version
        self.numbers = NumberPacer(settings.messages_per_second, burst_seconds=settings.burst_seconds)
        self.pairs = PairPacer(settings.pair_messages, settings.pair_interval_seconds)
        profile = replace(WHATSAPP_CLOUD, base_url=settings.base_url,
                          timeouts=Timeouts(total=settings.send_timeout_seconds))
        self.http = ProviderClient(profile, registry=registry, limiter=self.numbers)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, phone_number_id: str, token: str, body: dict[str, Any], *,
                   rate: float | None = None) -> SendResult:
        """POST /{version}/{phone_number_id}/messages, paced per number and per recipient."""
        key = number_key(phone_number_id)
        self.numbers.configure(key, rate or self.settings.messages_per_second)
        pair = PairPacer.key(phone_number_id, str(body.get("to", "")))
        deadline = time.monotonic() + self.settings.send_timeout_seconds
        for attempt in range(self.settings.rate_limit_retries + 1):
            await self.pairs.acquire(pair, deadline=deadline)
            try:
                response = await self.http.request(
                    "POST", f"/{self.version}/{phone_number_id}/messages", account=phone_number_id, json=body,
                    credential=token, idempotent=False, total_timeout=max(deadline - time.monotonic(), 0.001))
            except IonfluxError as exc:
                err = meta_error(exc)
                retry_after = exc.details.get("retry_after")
                if err.code == THROUGHPUT:
                    hold = self.numbers.throttled(key, retry_after)
                elif err.code == PAIR_RATE:
                    hold = retry_after or self.settings.pair_interval_seconds
                    self.pairs.pause(pair, hold)
                else:
                    raise map_meta_error(exc, err) from None
                if attempt == self.settings.rate_limit_retries or time.monotonic() + hold >= deadline:
                    mapped = map_meta_error(exc, err)
                    mapped.details["retry_after"] = round(hold, 3)
                    raise mapped from None
                continue
            return _send_result(response.json())
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- message templates (per WhatsApp Business Account) -----------------------------------------

    async def list_templates(self, waba_id: str, token: str, *, page_size: int = 100,
                             max_pages: int = 50) -> list[dict[str, Any]]:
        """Every template of the WABA, following Graph's cursor paging."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": page_size}
        for _ in range(max_pages):
            response = await self._call("GET", f"/{self.version}/{waba_id}/message_templates", waba_id, token,
                                        params=params)
            doc = response.json()
            found.extend(t for t in doc.get("data") or [] if isinstance(t, dict))
            after = ((doc.get("paging") or {}).get("cursors") or {}).get("after")
            if not after or not (doc.get("paging") or {}).get("next"):
                break
            params = {"limit": page_size, "after": after}
        return found

    async def create_template(self, waba_id: str, token: str, template: dict[str, Any]) -> dict[str, Any]:
        response = await self._call("POST", f"/{self.version}/{waba_id}/message_templates", waba_id, token,
                                    json=template)
        result: dict[str, Any] = response.json()
        return result

    async def delete_template(self, waba_id: str, token: str, name: str) -> None:
        await self._call("DELETE", f"/{self.version}/{waba_id}/message_templates", waba_id, token,
                         params={"name": name})

    async def _call(self, method: str, path: str, waba_id: str, token: str, **kw: Any) -> Any:
        try:
            return await self.http.request(method, path, account=f"waba-{waba_id}", credential=token, **kw)
        except IonfluxError as exc:
            raise map_meta_error(exc, meta_error(exc)) from None


def _send_result(doc: Any) -> SendResult:
    messages = doc.get("messages") if isinstance(doc, dict) else None
    first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else None
    if first is None or not isinstance(first.get("id"), str):
        raise ProviderApiError("WhatsApp accepted the message but its answer names no message id",
                               details={"provider": "whatsapp"})
    contacts = doc.get("contacts") or []
    wa_id = contacts[0].get("wa_id") if contacts and isinstance(contacts[0], dict) else None
    return SendResult(first["id"], wa_id, first.get("message_status"))

