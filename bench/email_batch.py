"""A 10,000-recipient templated batch through the EmailService, against raw sends made in the same run.

    .venv/bin/python bench/email_batch.py [--recipients 10000] [--only sendgrid|smtp]

SendGrid: `POST /v1/email/batch` (validation, suppression check, rendering, rows + events in the database,
dispatch) to the SendGrid simulator, vs one raw `httpx` mail/send POST per recipient. SMTP: the same batch to
the aiosmtpd sink, vs one raw `aiosmtplib.send` per recipient. Prints recipients/s, provider requests and
the ratios, and the CPU seconds the service leg used (this process also runs the HTTP client, the SMTP sink
and the outbox relay). The service runs in this process (pinned to --cpu, SQLite in a temporary directory);
the SendGrid simulator runs in a process of its own on --simulator-cpu, as the real provider is elsewhere. It also
checks that the bulk path left every message's queued and sent history rows and events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
from sqlalchemy import func, select

from ionflux.app import create_app
from ionflux.core.models import PLATFORM_WORKSPACE, OutboxEvent
from ionflux.core.platform import Platform
from ionflux.core.settings import Settings
from ionflux.email.models import EmailStatusChange
from ionflux.email.providers.base import Account
from ionflux.email.providers.sendgrid import SendGridProvider
from ionflux.email.providers.smtp import SmtpProvider
from ionflux.email.service_plugin import EmailPlugin
from ionflux.email.settings import EmailSettings, SendGridSettings, SmtpSettings
from ionflux.sandbox.smtp_sink import SmtpSink
from ionflux.services import services_running

KEY = "SG.bench-key"
SENDER = "news@shop.example.com"
TEMPLATE = {"subject": "{{ name }}, your offer", "text": "Hi {{ name }}, use {{ code }}.",
            "html": "<p>Hi {{ name }}, use <b>{{ code }}</b>.</p>"}


def recipients(n: int) -> list[dict[str, Any]]:
    return [{"to": f"user{i}@example.com", "template_data": {"name": f"User {i}", "code": f"C{i:05d}"}}
            for i in range(n)]


async def through_service(provider: str, n: int, sim_url: str, sink: SmtpSink, workdir: Path) -> tuple[float, int]:
    settings = Settings(data_dir=workdir / provider, relay_poll_seconds=0.2, max_body_bytes=8 * 1024 * 1024)
    Platform.from_settings(settings).db.upgrade()
    platform = Platform.from_settings(settings)
    await platform.start()
    sendgrid = SendGridProvider(SendGridSettings(base_url=sim_url))
    smtp = SmtpProvider(SmtpSettings(host=sink.host, port=sink.port, pool_size=16))
    plugin = EmailPlugin(platform, settings=EmailSettings(provider=provider),  # type: ignore[arg-type]
                         providers={"sendgrid": sendgrid, "smtp": smtp})
    platform.services["email"] = plugin
    app = create_app(platform, only=["platform"], manage_lifecycle=False)
    for router in plugin.routers():
        app.include_router(router)
    await platform.vault.put(PLATFORM_WORKSPACE, "sendgrid", {"api_key": KEY})
    ws = await platform.workspaces.create("bench")
    headers = {"Authorization": f"Bearer {ws.token}"}
    try:
        async with services_running([plugin]), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ionflux.bench", timeout=600) as client:
            await client.put("/v1/email/templates/offer", headers=headers, json=TEMPLATE)
            started, cpu = time.perf_counter(), time.process_time()
            response = await client.post("/v1/email/batch", headers=headers, json={
                "from": SENDER, "template_id": "offer", "recipients": recipients(n)})
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            response.raise_for_status()
            result = response.json()
            sent = sum(1 for r in result["results"] if r["status"] == "sent")
            if sent != n:
                raise SystemExit(f"{provider}: only {sent} of {n} sent")
            await _check_records(platform, ws.id, n)
            CPU[provider] = cpu
            requests = sendgrid.requests_sent if provider == "sendgrid" else smtp.pool(
                Account("-", {}, "none")).opened
    finally:
        await platform.stop()
    return elapsed, requests


CPU: dict[str, float] = {}  # process CPU seconds of each service leg (this process also runs the simulators)


async def _check_records(platform: Platform, workspace_id: str, n: int) -> None:
    """The bulk path still leaves, per message, its queued and sent history rows and events."""
    async with platform.db.tenant(workspace_id) as session:
        history = await session.scalar(select(func.count()).select_from(EmailStatusChange))
        events = await session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type.in_(["platform.email.events.messages.queued", "platform.email.events.messages.sent"])))
    if history != 2 * n or events != 2 * n:
        raise SystemExit(f"expected {2 * n} history rows and events, found {history} and {events}")


async def raw_httpx(n: int, url: str) -> float:
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            body = {"personalizations": [{"to": [{"email": f"user{i}@example.com"}],
                                          "subject": f"User {i}, your offer"}],
                    "from": {"email": SENDER},
                    "content": [{"type": "text/plain", "value": f"Hi User {i}, use C{i:05d}."},
                                {"type": "text/html", "value": f"<p>Hi User {i}, use <b>C{i:05d}</b>.</p>"}]}
            async with sem:
                r = await client.post(url + "/v3/mail/send", json=body, headers={"Authorization": f"Bearer {KEY}"})
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def raw_smtp(n: int, sink: SmtpSink) -> float:
    from email.message import EmailMessage

    started = time.perf_counter()
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = SENDER, f"user{i}@example.com", f"User {i}, your offer"
        msg.set_content(f"Hi User {i}, use C{i:05d}.")
        msg.add_alternative(f"<p>Hi User {i}, use <b>C{i:05d}</b>.</p>", subtype="html")
        async with sem:
            await aiosmtplib.send(msg, hostname=sink.host, port=sink.port)

    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


@contextmanager
def sendgrid_simulator(cpu: int | None) -> Iterator[str]:
    """The SendGrid simulator in a process of its own (on `cpu`): like the real provider, its work is not
    this process's. A fresh one per leg, so each leg starts with an empty mail store."""
    port = _free_port()
    code = ("import uvicorn; from ionflux.sandbox.sendgrid import SendGridSimulator; "
            f"uvicorn.run(SendGridSimulator(api_keys={{{KEY!r}}}, events=False).app(), host='127.0.0.1', "
            f"port={port}, log_level='warning')")
    argv = [sys.executable, "-c", code]
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *argv] if cpu is not None else argv)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the SendGrid simulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(n: int, only: str | None, sim_cpu: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with SmtpSink(with_api=False) as sink:
            if only in (None, "sendgrid"):
                with sendgrid_simulator(sim_cpu) as url:
                    base = await raw_httpx(n, url)
                with sendgrid_simulator(sim_cpu) as url:
                    ours, requests = await through_service("sendgrid", n, url, sink, Path(tmp))
                print(f"SendGrid  service: {n} recipients in {ours:6.2f} s = {n / ours:8.0f}/s "
                      f"({CPU['sendgrid']:.2f} CPU s), {requests} provider requests | raw httpx: {base:6.2f} s = "
                      f"{n / base:8.0f}/s, {n} requests | speed-up x{base / ours:.1f}, requests /{n / requests:.0f}")
            if only not in (None, "smtp"):
                return
            sink.clear()
            base = await raw_smtp(n, sink)
            sink.clear()
            ours, connections = await through_service("smtp", n, "http://127.0.0.1:9", sink, Path(tmp))
            print(f"SMTP      service: {n} recipients in {ours:6.2f} s = {n / ours:8.0f}/s "
                  f"({CPU['smtp']:.2f} CPU s), {connections} SMTP connections | raw aiosmtplib.send: {base:6.2f} s = "
                  f"{n / base:8.0f}/s, {n} connections | ratio x{base / ours:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--only", choices=["sendgrid", "smtp"], help="run one provider's legs")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU this process (the service) runs on")
    parser.add_argument("--simulator-cpu", type=int, default=1, help="the CPU the SendGrid simulator runs on")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    asyncio.run(main(args.recipients, args.only, args.simulator_cpu))
