"""An SMTP sink (`aiosmtpd`) that keeps every message it accepts, plus a small HTTP API to look at them.

    async with SmtpSink() as sink:            # on the test's loop; sink.host, sink.port, sink.messages
    with SmtpSink() as sink:                  # on a background thread (the demo, `ionflux sandbox`)
        sink.api_url                          # GET /messages, GET /messages/{index}, DELETE /messages

`reject(address, code)` makes RCPT refuse an address (to test bounces at the door); `connections` counts
the SMTP connections opened (to see reuse). With a `tls_context` the sink offers STARTTLS (`require_starttls`:
refuses mail without it) or, with `implicit_tls`, speaks TLS from the first byte (SMTPS); `logins` (username ->
password) makes it demand AUTH (over TLS only, aiosmtpd's default). Each mail records whether it came over
TLS and who logged in.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hmac
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ionflux.sandbox.server import SimulatorServer


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    tls: bool = False
    login: str | None = None

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    def body(self, subtype: str = "plain") -> str | None:
        part = self.message.get_body(preferencelist=(subtype,))
        return None if part is None else str(part.get_content())

    def summary(self, index: int, *, raw: bool = False) -> dict[str, Any]:
        msg = self.message
        view: dict[str, Any] = {
            "index": index, "mail_from": self.mail_from, "rcpt_tos": self.rcpt_tos, "peer": self.peer,
            "received_at": self.received_at.isoformat(), "subject": msg["Subject"], "message_id": msg["Message-ID"],
            "headers": {k: str(v) for k, v in msg.items()}, "text": self.body("plain"), "html": self.body("html"),
        }
        if raw:
            view["raw"] = self.data.decode("utf-8", errors="replace")
        return view


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        code = self.sink.rejected.get(address.lower())
        if code is not None:
            return f"{code} 5.1.1 <{address}>: recipient rejected by the sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = session.peer
        content = envelope.original_content or envelope.content or b""
        mail = ReceivedMail(
            mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos),
            data=content if isinstance(content, bytes) else content.encode(),
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
            login=_text(session.login_data) if session.authenticated else None,
        )
        with self.sink.lock:
            self.sink.messages.append(mail)
        return "250 2.0.0 OK: queued"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, with_api: bool = True,
                 tls_context: ssl.SSLContext | None = None, require_starttls: bool = False,
                 implicit_tls: bool = False, logins: dict[str, str] | None = None) -> None:
        if (require_starttls or implicit_tls) and tls_context is None:
            raise ValueError("STARTTLS or implicit TLS needs a tls_context")
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.logins = logins
        self.host = host
        self._requested_port = port
        self.port = 0
        self.messages: list[ReceivedMail] = []
        self.rejected: dict[str, int] = {}
        self.connections = 0
        self.lock = threading.Lock()
        self.api = SimulatorServer(self.api_app(), name="smtp-sink-api") if with_api else None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- the SMTP server ---------------------------------------------------------------------------
    def _protocol(self) -> SMTP:
        self.connections += 1
        starttls = self.tls_context if not self.implicit_tls else None
        return SMTP(_Handler(self), hostname="sink.ionflux.test", enable_SMTPUTF8=True, timeout=60,
                    tls_context=starttls, require_starttls=self.require_starttls,
                    authenticator=self._authenticate if self.logins is not None else None,
                    auth_required=self.logins is not None,
                    auth_require_tls=True)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        login, password = _text(getattr(auth_data, "login", None)), _text(getattr(auth_data, "password", None))
        known = (self.logins or {}).get(login or "")
        ok = known is not None and password is not None and hmac.compare_digest(known, password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def _serve(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, self.host, self._requested_port, ssl=self.tls_context if self.implicit_tls else None)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def start_async(self) -> SmtpSink:
        await self._serve()
        if self.api is not None:
            await self.api.start_async()
        return self

    async def stop_async(self) -> None:
        if self.api is not None:
            await self.api.stop_async()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        return await self.start_async()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop_async()

    def start(self) -> SmtpSink:
        """Serve on a background thread with its own loop (for processes that are not async)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the SMTP sink did not start in 10 s")
        if self.api is not None:
            self.api.start()
        return self

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop_async_server_only(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    async def stop_async_server_only(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------------
    def reject(self, address: str, code: int = 550) -> None:
        self.rejected[address.lower()] = code

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    async def wait_for(self, count: int, within: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + within
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sink has {len(self.messages)} messages, expected {count} within {within} s")
            await asyncio.sleep(0.01)
        return list(self.messages)

    @property
    def api_url(self) -> str:
        if self.api is None:
            raise RuntimeError("this sink has no HTTP API")
        return self.api.base_url

    def api_app(self) -> Starlette:
        async def listing(request: Request) -> Response:
            if request.method == "DELETE":
                self.clear()
                return Response(status_code=204)
            with self.lock:
                items = list(enumerate(self.messages))
            wanted = request.query_params.get("to")
            if wanted:
                items = [(i, m) for i, m in items if wanted.lower() in (r.lower() for r in m.rcpt_tos)]
            return JSONResponse({"count": len(items), "messages": [m.summary(i) for i, m in items]})

        async def one(request: Request) -> Response:
            try:
                index = int(request.path_params["index"])
                with self.lock:
                    mail = self.messages[index]
            except (ValueError, IndexError):
                return JSONResponse({"error": "no such message"}, status_code=404)
            return JSONResponse(mail.summary(index, raw=True))

        return Starlette(routes=[Route("/messages", listing, methods=["GET", "DELETE"]),
                                 Route("/messages/{index}", one, methods=["GET"])])
