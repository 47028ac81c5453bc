"""Build the RFC 5322 message for protocols that carry MIME (SMTP): stdlib `email`, SMTP policy (CRLF)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate

from ionflux.email.addresses import Address
from ionflux.email.providers.base import OutboundMessage
from ionflux.email.templates import fill

RESERVED_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject", "message-id", "date",
                              "mime-version", "content-type", "content-transfer-encoding"})


def message_id_header(message_id: str, sender: Address) -> str:
    return f"<{message_id}@{sender.email.rsplit('@', 1)[1]}>"


def _fmt(address: Address) -> str:
    return formataddr((address.name or "", address.email))


def build_mime(message: OutboundMessage) -> bytes:
    mime = EmailMessage(policy=SMTP)
    mime["From"] = _fmt(message.sender)
    if message.to:
        mime["To"] = ", ".join(_fmt(a) for a in message.to)
    if message.cc:
        mime["Cc"] = ", ".join(_fmt(a) for a in message.cc)
    if message.reply_to:
        mime["Reply-To"] = _fmt(message.reply_to)
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(localtime=False, usegmt=True)
    mime["Message-ID"] = message_id_header(message.id, message.sender)
    for name, value in message.headers.items():
        mime[name] = value
    text = fill(message.text, message.substitutions)
    html = fill(message.html, message.substitutions)
    if text is not None:
        mime.set_content(text)
        if html is not None:
            mime.add_alternative(html, subtype="html")
    else:
        mime.set_content(html or "", subtype="html")
    return mime.as_bytes()
