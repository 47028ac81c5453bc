"""AWS SNS (and the SES notifications it carries): RSA signatures over selected fields (API_FACTS §4).

SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, over `"Key\\nValue\\n"` for the fields of the
message type in their fixed order. The certificate comes from `SigningCertURL`, accepted only when it
is https on a host matching `^sns\\.<region>\\.amazonaws\\.com(\\.cn)?$` (anchored), on the default port,
with a `.pem` path; it is fetched through an injectable `Fetcher` (tests need no network) and cached.
SNS signs fields of its JSON body rather than the bytes, so this is the one verifier that parses first.

The account is the `TopicArn` (Connection.external_id): a topic nobody registered is refused (404).
Topics: SES notifications -> `platform.ses.events.email.<bounce|complaint|delivery|…>`; other
notifications -> `platform.sns.events.notifications.received`; `SubscriptionConfirmation` ->
`platform.sns.events.subscriptions.confirmation_requested` (and, when enabled, confirmed after the ack
by fetching its `SubscribeURL`, itself checked to be the same AWS region's SNS host);
`UnsubscribeConfirmation` -> `platform.sns.events.subscriptions.unsubscribed`. Dedupe: `MessageId`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ionflux.core.ttl_cache import TtlCache
from ionflux.core.webhooks.base import (
    InboundPart,
    MalformedDelivery,
    SignatureInvalid,
    WebhookProvider,
    bounded,
    camel_word,
    check_age,
    json_object,
    parse_time,
    topic,
)

Fetcher = Callable[[str], Awaitable[bytes]]
SNS_HOST = re.compile(r"^sns\.([a-zA-Z0-9\-]{3,})\.amazonaws\.com(\.cn)?$")
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_region(url: str) -> str | None:
    """The region of an https SNS URL on the default port, or None if it is anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "https" or parts.username or parts.password or port not in (None, 443):
        return None
    match = SNS_HOST.fullmatch(parts.hostname or "")
    return match.group(1) if match else None


async def https_fetcher(url: str) -> bytes:
    async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    fields = SIGNED_FIELDS[str(message["Type"])]
    return "".join(f"{k}\n{message[k]}\n" for k in fields if k in message and message[k] is not None).encode()


class SnsWebhooks(WebhookProvider):
    name = "sns"
    vault_provider = "sns"
    signature_headers = frozenset()
    needs_secrets = False

    def __init__(self, fetcher: Fetcher = https_fetcher, *, tolerance: float = 24 * 3600,
                 auto_confirm: bool = True, cache_seconds: float = 86400, cache_size: int = 32) -> None:
        self.fetcher = fetcher
        self.tolerance = tolerance
        self.auto_confirm = auto_confirm
        # One fetch per URL however many deliveries arrive at once; a failed fetch is not kept.
        self._certs: TtlCache[str, rsa.RSAPublicKey] = TtlCache(cache_seconds, max_entries=cache_size)

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        message = _message(body, headers)
        version = message.get("SignatureVersion")
        if version not in HASHES:
            raise SignatureInvalid("signature", "SignatureVersion must be 1 or 2")
        cert_url = message.get("SigningCertURL")
        if (not isinstance(cert_url, str) or sns_region(cert_url) is None
                or not urlsplit(cert_url).path.endswith(".pem")):
            raise SignatureInvalid("signature", "SigningCertURL is not an https .pem URL on sns.<region>.amazonaws.com")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid("signature", "Signature is not base64") from None
        key = await self._certificate_key(cert_url, now)
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), HASHES[str(version)]())
        except InvalidSignature:
            raise SignatureInvalid("signature", "the SNS signature does not verify") from None
        moment = parse_time(str(message["Timestamp"]))
        if moment is None:
            raise MalformedDelivery("malformed", "Timestamp is not an ISO 8601 time")
        check_age(moment.timestamp(), now, self.tolerance, future=self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        message = _message(body, headers)
        kind = str(message["Type"])
        if kind == "Notification":
            inner = _inner(message)
            ses_type = inner.get("notificationType") or inner.get("eventType") if inner else None
            event_type = (topic("ses", "email", camel_word(ses_type)) if isinstance(ses_type, str)
                          else topic("sns", "notifications", "received"))
        elif kind == "SubscriptionConfirmation":
            event_type = topic("sns", "subscriptions", "confirmation_requested")
        else:
            event_type = topic("sns", "subscriptions", "unsubscribed")
        return [InboundPart(
            account=bounded(str(message["TopicArn"]), "TopicArn"),
            delivery_id=bounded(str(message["MessageId"]), "MessageId"),
            dedupe_key=bounded(str(message["MessageId"]), "MessageId"), topic=kind, event_type=event_type,
            body=body, payload=self.payload(body), subject=str(message["TopicArn"])[:255],
        )]

    def payload(self, body: bytes) -> Any:
        message = json_object(body)
        inner = _inner(message)
        return {**message, "Message": inner} if inner is not None else message

    async def confirm(self, body: bytes) -> None:
        """Confirm a verified SubscriptionConfirmation: GET its SubscribeURL, only on the topic's region."""
        message = json_object(body)
        url, arn = str(message.get("SubscribeURL", "")), str(message.get("TopicArn", ""))
        arn_parts = arn.split(":")
        region = sns_region(url)
        if region is None or len(arn_parts) < 6 or arn_parts[3] != region:
            raise ValueError("SubscribeURL is not the SNS endpoint of the topic's region")
        await self.fetcher(url)

    async def _certificate_key(self, url: str, now: float) -> rsa.RSAPublicKey:
        async def load() -> rsa.RSAPublicKey:
            try:
                pem = await self.fetcher(url)
                cert = x509.load_pem_x509_certificate(pem)
            except Exception as exc:  # network or parse failure: nothing can be verified
                raise SignatureInvalid("certificate", f"the signing certificate could not be used: "
                                                      f"{type(exc).__name__}") from None
            return _sns_public_key(cert, now)
        return await self._certs.get(url, load)


def _sns_public_key(cert: x509.Certificate, now: float) -> rsa.RSAPublicKey:
    moment = datetime.fromtimestamp(now, UTC)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        raise SignatureInvalid("certificate", "the signing certificate is not valid now")
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        names += cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    if not any(n == "sns.amazonaws.com" or SNS_HOST.fullmatch(n) for n in names):
        raise SignatureInvalid("certificate", "the signing certificate was not issued to SNS")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid("certificate", "the signing certificate has no RSA key")
    return key


def _message(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    message = json_object(body)
    kind = message.get("Type")
    if kind not in SIGNED_FIELDS:
        raise MalformedDelivery("malformed", "Type must be Notification, SubscriptionConfirmation or "
                                             "UnsubscribeConfirmation")
    declared = headers.get("x-amz-sns-message-type")
    if declared is not None and declared != kind:
        raise MalformedDelivery("malformed", "x-amz-sns-message-type does not match the body's Type")
    required = [k for k in SIGNED_FIELDS[kind] if k != "Subject"]
    if any(not isinstance(message.get(k), str) for k in required):
        raise MalformedDelivery("malformed", f"{', '.join(required)} must be strings")
    return message


def _inner(message: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        inner = json.loads(str(message.get("Message", "")))
    except json.JSONDecodeError:
        return None
    return inner if isinstance(inner, dict) else None
