"""SES test set-up: moto in server mode on loopback, a boto3 session that records what goes on the wire, and
two operations moto 5.2 lacks.

moto answers SendEmail (Simple and Raw) with its real checks (verified identity, 50 recipients), but 404s
GetAccount and SendBulkEmail. `WireTap` is a botocore `before-send` handler, so it sees each request exactly
as botocore serialised (and validated) it; for those two operations it answers itself: GetAccount from a
configured quota, SendBulkEmail by rendering each entry (only `{{name}}` replacement, the subset our adapter
emits; anything else fails the test) and handing it to moto's own SES backend, so bulk mail lands in the same
place as single sends. Faults (an error status and code for the next N calls of an operation) come back
through botocore's real response parser.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.compat import HTTPHeaders
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

from tests.server import free_port

ACCOUNT = "123456789012"
REGION = "us-east-1"
PLATFORM_KEYS = {"access_key_id": "AKIAPLATFORM00000001", "secret_access_key": "platform-secret-key"}
WORKSPACE_KEYS = {"access_key_id": "AKIAWORKSPACE0000001", "secret_access_key": "workspace-secret-key"}
_VARIABLE = re.compile(r"\{\{([A-Za-z0-9_]+)\}\}")


@dataclass
class WireCall:
    operation: str
    access_key_id: str
    body: dict[str, Any]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _respond(status: int, body: dict[str, Any], url: str, headers: dict[str, str] | None = None) -> AWSResponse:
    return AWSResponse(url, status, cast(HTTPHeaders, {"Content-Type": "application/json", **(headers or {})}),
                       _Raw(json.dumps(body).encode()))


@dataclass
class WireTap:
    quota: dict[str, Any] | None = None  # GetAccount's answer; None: 404 like moto
    calls: list[WireCall] = field(default_factory=list)
    faults: list[tuple[str, int, str]] = field(default_factory=list)  # (operation, status, error code)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("before-send.sesv2", cast(Callable[..., None], self))
        return session

    def __call__(self, request: AWSRequest, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[1]
        auth = str(request.headers.get("Authorization", ""))
        key_id = auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""
        body = json.loads(request.body) if request.body else {}
        with self.lock:
            self.calls.append(WireCall(operation, key_id, body))
            fault = next((f for f in self.faults if f[0] == operation), None)
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None:  # how rest-json services name an error: the x-amzn-ErrorType header
            return _respond(fault[1], {"message": f"injected {fault[2]}"}, str(request.url),
                            {"x-amzn-ErrorType": fault[2]})
        if operation == "GetAccount" and self.quota is not None:
            return _respond(200, self.quota, str(request.url))
        if operation == "SendBulkEmail":
            return _respond(200, {"BulkEmailEntryResults": _bulk_into_moto(body)}, str(request.url))
        return None

    def of(self, operation: str) -> list[WireCall]:
        return [c for c in self.calls if c.operation == operation]


def _render(template: str | None, data: dict[str, Any]) -> str | None:
    if template is None:
        return None
    out = _VARIABLE.sub(lambda m: str(data[m.group(1)]), template)
    assert "{{" not in out and "}}" not in out, f"unexpected template syntax in {template!r}"
    return out


def _bulk_into_moto(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = body["DefaultContent"]["Template"]["TemplateContent"]
    backend = ses_backends[ACCOUNT][REGION]
    results = []
    for entry in body["BulkEmailEntries"]:
        data = json.loads(entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"])
        text, html = _render(content.get("Text"), data), _render(content.get("Html"), data)
        message = backend.send_email(source=body["FromEmailAddress"], subject=_render(content["Subject"], data) or "",
                                     body=html or text or "", destinations=entry["Destination"])
        results.append({"Status": "SUCCESS", "MessageId": message.id})
    return results


def sent_messages() -> list[Any]:
    """What moto's SES accepted (Message: source, destinations, subject, body; RawMessage: raw_data)."""
    return list(ses_backends[ACCOUNT][REGION].sent_messages)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_ses(moto_server: str) -> str:
    """A reset moto with the sender's domain verified (as SES requires before anything is sent)."""
    httpx.post(f"{moto_server}/moto-api/reset").raise_for_status()
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=moto_server,
                          aws_access_key_id="AKIASETUP", aws_secret_access_key="setup")
    client.create_email_identity(EmailIdentity="shop.example.com")
    client.close()
    return moto_server
