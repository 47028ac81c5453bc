"""What SES v2 calls carry (API_FACTS §4): SendEmail arguments for one message, SendBulkEmail arguments for a
templated group, and how botocore's errors and bulk entry statuses map onto our failure kinds.

Our ids ride in every message twice: as `EmailTags` (SES event publishing puts them in `mail.tags`) and as
`X-Ionflux-*` headers (identity notifications can include the original headers), so the SNS notifications
that come back name their workspace and message (see `email/webhooks.py` and `email/events.py`).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from email.utils import formataddr
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from ionflux.email.addresses import Address
from ionflux.email.providers.base import OutboundMessage, ProviderFailure
from ionflux.email.providers.mime import build_mime
from ionflux.email.templates import fill

MESSAGE_TAG, WORKSPACE_TAG = "ionflux_message_id", "ionflux_workspace"
MAX_HEADERS = 15  # SES v2 MessageHeaderList
HEADER_NAME = re.compile(r"^[!-9;-@A-~]{1,126}$")  # the SES v2 model's MessageHeaderName pattern
HEADER_VALUE = re.compile(r"^[ -~]{1,995}$")  # MessageHeaderValue: printable ASCII
UTF8 = "UTF-8"
THROTTLED = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
ACCOUNT_BLOCKED = frozenset({"LimitExceededException", "SendingPausedException", "AccountSuspendedException"})
AUTH = frozenset({"UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                  "AccessDeniedException", "AccessDenied", "ExpiredToken", "ExpiredTokenException",
                  "IncompleteSignature", "MissingAuthenticationToken", "InvalidSignatureException"})
BULK_RETRY = frozenset({"ACCOUNT_THROTTLED", "TRANSIENT_FAILURE"})
BULK_BLOCKED = frozenset({"ACCOUNT_DAILY_QUOTA_EXCEEDED", "ACCOUNT_SUSPENDED", "ACCOUNT_SENDING_PAUSED",
                          "CONFIGURATION_SET_SENDING_PAUSED"})


def fmt(address: Address) -> str:
    """`Name <a@x.com>`; a non-ASCII display name as an RFC 2047 encoded word, as SES requires."""
    return formataddr((address.name or "", address.email), charset="utf-8")


def _ids(m: OutboundMessage) -> dict[str, str]:
    return {"X-Ionflux-Message-Id": m.id, "X-Ionflux-Workspace": m.workspace_id}


def _tags(m: OutboundMessage) -> list[dict[str, str]]:
    return [{"Name": MESSAGE_TAG, "Value": m.id}, {"Name": WORKSPACE_TAG, "Value": m.workspace_id}]


def simple_headers(m: OutboundMessage) -> list[dict[str, str]] | None:
    """The message's headers as SES `Simple` content takes them, or None if they do not fit its rules."""
    headers = {**m.headers, **_ids(m)}
    if len(headers) > MAX_HEADERS:
        return None
    if not all(HEADER_NAME.match(k) and HEADER_VALUE.match(v) for k, v in headers.items()):
        return None
    return [{"Name": k, "Value": v} for k, v in headers.items()]


def destination(m: OutboundMessage) -> dict[str, list[str]]:
    found = {"ToAddresses": [fmt(a) for a in m.to], "CcAddresses": [fmt(a) for a in m.cc],
             "BccAddresses": [fmt(a) for a in m.bcc]}
    return {k: v for k, v in found.items() if v}


def _common(m: OutboundMessage, configuration_set: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"FromEmailAddress": fmt(m.sender)}
    if m.reply_to:
        args["ReplyToAddresses"] = [fmt(m.reply_to)]
    if configuration_set:
        args["ConfigurationSetName"] = configuration_set
    return args


def send_email_args(m: OutboundMessage, configuration_set: str | None) -> dict[str, Any]:
    """SendEmail for one message: `Simple` content, or `Raw` MIME when its headers exceed what `Simple` allows."""
    args = {**_common(m, configuration_set), "Destination": destination(m), "EmailTags": _tags(m)}
    headers = simple_headers(m)
    if headers is None:
        raw = build_mime(replace(m, headers={**m.headers, **_ids(m)}))
        args["Content"] = {"Raw": {"Data": raw}}
        return args
    body: dict[str, Any] = {}
    text, html = fill(m.text, m.substitutions), fill(m.html, m.substitutions)
    if text is not None:
        body["Text"] = {"Data": text, "Charset": UTF8}
    if html is not None:
        body["Html"] = {"Data": html, "Charset": UTF8}
    args["Content"] = {"Simple": {"Subject": {"Data": m.subject, "Charset": UTF8}, "Body": body,
                                  "Headers": headers}}
    return args


def bulk_key(m: OutboundMessage) -> tuple[Any, ...] | None:
    """Messages with the same key can share one SendBulkEmail; None: this one cannot go in bulk.

    Only batch members rendered to a skeleton qualify, and only when the skeleton's literal text holds nothing
    SES's Handlebars would read as its own syntax (`{{`, `}}`, `\\`)."""
    if not m.substitutions or simple_headers(m) is None:
        return None
    for part in (m.text, m.html):
        if part is not None and ("{{" in part or "}}" in part or "\\" in part):
            return None
    return (m.sender, m.reply_to, m.text, m.html)


def send_bulk_args(group: list[OutboundMessage], configuration_set: str | None) -> dict[str, Any]:
    """One inline template (SES substitutes `{{s}}` and `{{vN}}`, and escapes nothing: our values are
    already escaped for HTML) and one entry per message with its subject, values, headers and tags."""
    first = group[0]
    names = {tag: f"v{i}" for i, tag in enumerate(sorted({t for m in group for t in m.substitutions}))}

    def template(part: str | None) -> str | None:
        if part is None:
            return None
        for tag, name in names.items():
            part = part.replace(tag, "{{" + name + "}}")
        return part

    content: dict[str, Any] = {"Subject": "{{s}}"}
    for key, part in (("Text", first.text), ("Html", first.html)):
        if part is not None:
            content[key] = template(part)
    entries = []
    for m in group:
        data = {"s": m.subject, **{name: m.substitutions.get(tag, "") for tag, name in names.items()}}
        entries.append({
            "Destination": destination(m),
            "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps(data)}},
            "ReplacementTags": _tags(m), "ReplacementHeaders": simple_headers(m) or [],
        })
    return {**_common(first, configuration_set),
            "DefaultContent": {"Template": {"TemplateContent": content, "TemplateData": "{}"}},
            "BulkEmailEntries": entries}


def bulk_failure(status: str, error: str | None) -> ProviderFailure:
    message = f"SES refused this entry: {status}" + (f" ({error[:300]})" if error else "")
    if status in BULK_RETRY:
        return ProviderFailure("throttled", message)
    if status in BULK_BLOCKED:
        return ProviderFailure("unavailable", message)
    return ProviderFailure("rejected", message)


def classify(exc: Exception) -> tuple[ProviderFailure, bool]:
    """(the failure, whether the same call may be retried after a backoff)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) or None
        text = str(error.get("Message", ""))[:300]
        if code in THROTTLED or status == 429:
            return ProviderFailure("throttled", f"SES throttled the call ({code})", status=status), True
        if status is not None and status >= 500:
            return ProviderFailure("unavailable", f"SES failed with {status} ({code})", status=status), True
        if code in ACCOUNT_BLOCKED:
            return ProviderFailure("unavailable", f"SES will not send for this account now ({code}: {text})",
                                   status=status), False
        if code in AUTH or status in (401, 403):
            return ProviderFailure("auth", f"SES refused the credential ({code})", status=status), False
        return ProviderFailure("rejected", f"SES rejected the message ({code}: {text})", status=status), False
    if isinstance(exc, ParamValidationError):  # refused before anything was sent
        return ProviderFailure("rejected", f"SES arguments refused by botocore: {str(exc)[:300]}"), False
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderFailure("auth", "the SES credential is incomplete"), False
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return ProviderFailure("unavailable", f"SES could not be reached ({type(exc).__name__})"), True
    # A read timeout, a connection closed mid-call, or anything unforeseen: the request may have gone out.
    return ProviderFailure("ambiguous", f"SES did not answer ({type(exc).__name__}); the mail may have been "
                                        "accepted, so it is not re-sent"), False
