"""SMTP transport security with aiosmtplib against an aiosmtpd sink holding a self-signed certificate made here:
STARTTLS (opportunistic and required), implicit TLS, certificate validation, AUTH with the workspace's own
login from the vault. Protocol-level, so these run on SQLite only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ionflux.core.platform import Platform
from ionflux.email.providers.smtp import SmtpProvider
from ionflux.email.settings import SmtpSettings
from ionflux.sandbox.smtp_sink import SmtpSink
from tests.conftest import WorkspaceHandle
from tests.email_support import EmailEnv, email_env
from tests.tls_certs import Cert, make_cert

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    return make_cert(tmp_path_factory.mktemp("tls"), "sink")


@asynccontextmanager
async def tls_env(platform: Platform, workspace: WorkspaceHandle, sink: SmtpSink,
                  **smtp: Any) -> AsyncIterator[EmailEnv]:
    async with sink:
        def providers(_unused: SmtpSink) -> dict[str, Any]:
            return {"smtp": SmtpProvider(SmtpSettings(host=sink.host, port=sink.port, timeout=5.0, **smtp))}

        async with email_env(platform, workspace.id, workspace.token, providers=providers) as env:
            env.extra["sink"] = sink
            yield env


async def test_required_starttls_is_used_and_the_certificate_checked(platform: Platform, workspace: WorkspaceHandle,
                                                                     cert: Cert) -> None:
    sink = SmtpSink(with_api=False, tls_context=cert.server_context(), require_starttls=True)
    async with tls_env(platform, workspace, sink, cert_bundle=str(cert.cert_file)) as env:
        sent = await env.send(to=["a@example.com"], subject="s", text="over tls")
        assert sent["status"] == "sent", sent
        [mail] = sink.messages
        assert mail.tls and mail.body("plain").strip() == "over tls"


async def test_plain_session_refused_by_a_sink_requiring_starttls(platform: Platform, workspace: WorkspaceHandle,
                                                                  cert: Cert) -> None:
    sink = SmtpSink(with_api=False, tls_context=cert.server_context(), require_starttls=True)
    async with tls_env(platform, workspace, sink, start_tls=False) as env:
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "failed" and not sink.messages
        assert "530" in (await env.message(sent["message_id"]))["last_error"]


async def test_untrusted_certificate_sends_nothing(platform: Platform, workspace: WorkspaceHandle, cert: Cert,
                                                   tmp_path: Path) -> None:
    stranger = make_cert(tmp_path, "stranger")  # the sink shows a certificate the client does not trust
    sink = SmtpSink(with_api=False, tls_context=stranger.server_context())
    async with tls_env(platform, workspace, sink, start_tls=True, cert_bundle=str(cert.cert_file)) as env:
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "queued" and not sink.messages  # unavailable: retried later, never sent in clear
        view = await env.message(sent["message_id"])
        assert "SSLCertVerificationError" in view["last_error"]


async def test_starttls_demanded_by_the_client_but_not_offered(platform: Platform, workspace: WorkspaceHandle,
                                                               cert: Cert) -> None:
    async with tls_env(platform, workspace, SmtpSink(with_api=False), start_tls=True,
                       cert_bundle=str(cert.cert_file)) as env:
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "queued" and not env.extra["sink"].messages
        assert "STARTTLS" in (await env.message(sent["message_id"]))["last_error"]


async def test_implicit_tls(platform: Platform, workspace: WorkspaceHandle, cert: Cert) -> None:
    sink = SmtpSink(with_api=False, tls_context=cert.server_context(), implicit_tls=True)
    async with tls_env(platform, workspace, sink, use_tls=True, cert_bundle=str(cert.cert_file)) as env:
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "sent" and sink.messages[0].tls


async def test_auth_with_the_workspace_login_over_starttls(platform: Platform, workspace: WorkspaceHandle,
                                                           cert: Cert) -> None:
    sink = SmtpSink(with_api=False, tls_context=cert.server_context(), logins={"acme": "s3cret-pass"})
    async with tls_env(platform, workspace, sink, cert_bundle=str(cert.cert_file)) as env:
        put = await env.client.put("/v1/credentials/smtp", headers=env.headers,
                                   json={"secrets": {"username": "acme", "password": "wrong-pass"}})
        assert put.status_code in (200, 201), put.text
        refused = await env.send(to=["a@example.com"], subject="s", text="t")
        assert refused["status"] == "failed" and not sink.messages
        assert "wrong-pass" not in str(await env.message(refused["message_id"]))
        await env.client.put("/v1/credentials/smtp", headers=env.headers,
                             json={"secrets": {"username": "acme", "password": "s3cret-pass"}})
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "sent" and [(m.login, m.tls) for m in sink.messages] == [("acme", True)]
