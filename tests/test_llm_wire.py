"""The LLM adapters' HTTP/1.1 client (`llm/providers/wire.py`) against scripted servers on 127.0.0.1: keep-alive
reuse and its limits, body framing (Content-Length, chunked, end of connection), interim answers, timeouts and
deadlines, streamed bodies, refused headers, oversized answers, cancellation, and TLS with certificate checks."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from ionflux.core.errors import AuthFailed
from ionflux.core.http import AuthStyle, ProviderHttpMetrics
from ionflux.llm.providers import wire
from ionflux.llm.providers.http import HttpProvider
from ionflux.llm.providers.openai_compat import llm_profile
from ionflux.llm.providers.wire import HeaderRefused, Origin
from ionflux.llm.settings import ProviderSettings
from tests.tls_certs import make_cert

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """Reads each request (head and Content-Length body) and lets `script` answer it on the same connection."""

    script: Script
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                await self.script(reader, writer, self)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script, tls: ssl.SSLContext | None = None) -> Server:
        server = Server(script, tls)
        listener = await asyncio.start_server(server._handle, "127.0.0.1", 0, ssl=tls)
        server.port = listener.sockets[0].getsockname()[1]
        servers.append(listener)
        return server

    yield start
    for listener in servers:
        listener.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for something the loop delivers asynchronously: a peer's hang-up, a filled buffer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def origin(server: Server, *, read_timeout: float = 5.0, tls: ssl.SSLContext | None = None,
           idle_seconds: float = 15.0) -> Origin:
    return Origin(server.url, tls=tls, connect_timeout=2.0, read_timeout=read_timeout, idle_seconds=idle_seconds)


async def post(client: Origin, body: bytes = b"{}", headers: dict[str, str] | None = None,
               deadline: float = 10.0) -> wire.Answer:
    head = client.head("POST", "/v1/chat", headers or {"content-type": "application/json"}, len(body))
    return await client.request(head, body, asyncio.get_running_loop().time() + deadline)


async def answer_ok(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _s: Server) -> None:
    writer.write(OK)
    await writer.drain()


async def test_keep_alive_connections_are_reused_and_the_request_is_well_formed(serve) -> None:
    server = await serve(answer_ok)
    client = origin(server)
    answers = [await post(client, b'{"n":1}', {"content-type": "application/json", "authorization": "Bearer k"})
               for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5 and answers[0].body == b'{"ok":true}'
    assert answers[0].header("content-type") == "application/json"
    assert server.connections == 1 and len(server.requests) == 5
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat HTTP/1.1" and body == b'{"n":1}'
    assert {b"host: 127.0.0.1:%d" % server.port, b"authorization: Bearer k", b"content-length: 7"} <= set(lines)
    assert not any(line.lower().startswith(b"accept-encoding") for line in lines)  # answers come uncompressed
    await client.aclose()


async def test_connection_close_and_a_server_that_hung_up_are_not_reused(serve) -> None:
    async def close_after(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if len(server.requests) == 1:  # says it will close, and takes its time to do it
            writer.write(OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n"))
            await writer.drain()
            await asyncio.sleep(0.3)
        else:  # hangs up without saying so
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await serve(close_after)
    client = origin(server)
    assert (await post(client)).status == 200
    assert (await post(client)).status == 200  # at once, on a new connection
    await eventually(lambda: all(c.closed for c in client._idle))  # the silent hang-up has reached us
    assert (await post(client)).status == 200
    assert server.connections == 3


async def test_idle_connections_expire(serve) -> None:
    server = await serve(answer_ok)
    client = origin(server, idle_seconds=0.05)
    await post(client)
    await asyncio.sleep(0.1)
    await post(client)
    assert server.connections == 2


async def test_chunked_interim_and_end_of_connection_bodies(serve) -> None:
    async def framed(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        n = len(server.requests)
        if n == 1:  # an interim answer, then a chunked one written in pieces
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"6\r\n world\r\n0\r\n\r\n")
        else:  # no length, no chunks: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the ")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"end")
            await writer.drain()
            writer.close()
        await writer.drain()

    server = await serve(framed)
    client = origin(server)
    first = await post(client)
    assert (first.status, first.body) == (200, b"hello world")
    second = await post(client)
    assert (second.status, second.body) == (200, b"until the end")
    assert server.connections == 1  # the chunked answer left its connection reusable


async def test_a_connection_dropped_mid_answer_is_a_read_error_and_is_not_reused(serve) -> None:
    async def drop(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if len(server.requests) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial")
            await writer.drain()
            writer.close()
        else:
            writer.write(OK)

    server = await serve(drop)
    client = origin(server)
    with pytest.raises(httpx.ReadError, match="before its answer was complete"):
        await post(client)
    assert (await post(client)).status == 200 and server.connections == 2


async def test_malformed_and_oversized_answers(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    async def bad(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if len(server.requests) == 1:
            writer.write(b"HTTP/1.1 2OO OK\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"x" * 5000)

    server = await serve(bad)
    client = origin(server)
    with pytest.raises(httpx.RemoteProtocolError, match="not valid HTTP"):
        await post(client)
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", 4096)
    with pytest.raises(httpx.RemoteProtocolError, match="over 4096 bytes"):
        await post(client)


async def test_read_timeout_and_total_deadline(serve) -> None:
    async def silent(reader: asyncio.StreamReader, _w: asyncio.StreamWriter, _s: Server) -> None:
        await reader.read()  # never answers

    async def trickle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _s: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        for _ in range(100):  # a byte every 50 ms: never silent for long, never done
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    client = origin(await serve(silent), read_timeout=0.2)
    started = loop.time()
    with pytest.raises(httpx.ReadTimeout, match=r"nothing for 0\.2 s"):
        await post(client)
    assert loop.time() - started < 2
    client = origin(await serve(trickle), read_timeout=1.0)
    started = loop.time()
    with pytest.raises(httpx.ReadTimeout, match="deadline"):
        await post(client, deadline=0.4)
    assert loop.time() - started < 2


async def test_connect_failures_say_nothing_was_sent() -> None:
    with socket_closed_port() as port:
        client = Origin(f"http://127.0.0.1:{port}", tls=None, connect_timeout=1, read_timeout=1)
        with pytest.raises(httpx.ConnectError):
            await post(client)


class socket_closed_port:
    """A port nothing listens on."""

    def __enter__(self) -> int:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


async def test_headers_that_could_split_the_request_are_refused_before_sending(serve) -> None:
    server = await serve(answer_ok)
    client = origin(server)
    for bad in ("k\r\nx-injected: 1", "k\nx", "k\0", "clé"):
        with pytest.raises(HeaderRefused, match="authorization header") as caught:
            await post(client, headers={"authorization": f"Bearer {bad}"})
        assert bad not in str(caught.value)
    assert server.requests == [] and server.connections == 0
    # Through the adapters' provider: a workspace key that would inject a header is an AUTH_FAILED that does not
    # quote it, and the provider never sees a byte.
    settings = ProviderSettings(base_url=server.url + "/v1")
    provider = HttpProvider(llm_profile("openai", settings, AuthStyle("Authorization", "Bearer")),
                            ProviderHttpMetrics.on(CollectorRegistry()))
    with pytest.raises(AuthFailed) as failure:
        await provider.post_json("/chat/completions", {}, "sk-x\r\nx-evil: 1")
    assert "x-evil" not in failure.value.message and server.requests == []
    await provider.aclose()


async def test_a_cancelled_request_closes_its_connection(serve) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if len(server.requests) == 1:
            await asyncio.sleep(0.5)  # the late answer must not be read as the next request's
        writer.write(OK)
        await writer.drain()

    server = await serve(slow)
    client = origin(server)
    task = asyncio.create_task(post(client))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await post(client)).body == b'{"ok":true}' and server.connections == 2


async def test_streamed_bodies_arrive_as_sent_and_in_full(serve) -> None:
    big = b"y" * (3 * 1024 * 1024)  # beyond the buffer that pauses reading

    async def stream(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        parts = [b"data: 1\n\n", b"data: 2\n\n"] if len(server.requests) == 1 else [big]
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await serve(stream)
    client = origin(server)
    head = client.head("POST", "/v1/chat", {"content-type": "application/json"}, 2)
    answer = await client.open(head, b"{}")
    assert answer.status == 200 and answer.header("content-type") == "text/event-stream"
    pieces = [chunk async for chunk in answer.chunks()]
    answer.release()
    assert pieces == [b"data: 1\n\n", b"data: 2\n\n"]  # each as it came, not gathered at the end
    answer = await client.open(head, b"{}")
    transport = answer._conn.transport
    assert transport is not None
    await eventually(lambda: not transport.is_reading())  # back-pressure: unread, we stopped reading
    assert await answer.read() == big
    assert transport.is_reading()
    answer.release()
    assert server.connections == 1


async def test_a_stream_released_before_its_end_closes_its_connection(serve) -> None:
    async def endless(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, _s: Server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(40):
            writer.write(b"9\r\ndata: x\n\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await serve(endless)
    client = origin(server)
    answer = await client.open(client.head("POST", "/", {}, 0), b"")
    async for _chunk in answer.chunks():
        break
    answer.release()
    answer = await client.open(client.head("POST", "/", {}, 0), b"")
    answer.release()
    assert server.connections == 2


async def test_tls_checks_the_certificate_and_the_name(serve, tmp_path: Path) -> None:
    cert = make_cert(tmp_path, "provider")
    server = await serve(answer_ok, tls=cert.server_context())
    trusting = ssl.create_default_context(cafile=str(cert.cert_file))
    client = origin(server, tls=trusting)
    assert (await post(client)).body == b'{"ok":true}'
    stranger = ssl.create_default_context(cafile=str(make_cert(tmp_path, "stranger").cert_file))
    with pytest.raises(httpx.ConnectError, match="certificate"):
        await post(origin(server, tls=stranger))
    # The certificate names localhost and 127.0.0.1; the same server reached as 127.0.0.2 is refused.
    elsewhere = await asyncio.start_server(server._handle, "127.0.0.2", 0, ssl=cert.server_context())
    try:
        port = elsewhere.sockets[0].getsockname()[1]
        wrong_name = Origin(f"https://127.0.0.2:{port}", tls=trusting, connect_timeout=2, read_timeout=2)
        with pytest.raises(httpx.ConnectError, match="mismatch"):
            await post(wrong_name)
    finally:
        elsewhere.close()
    await client.aclose()


async def test_connections_are_capped_and_failures_free_their_slots(serve) -> None:
    async def slow_then_drop(_r: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        if len(server.requests) <= 3:  # the first three die mid-answer
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{")
            await writer.drain()
            writer.close()
            return
        await asyncio.sleep(0.05)
        writer.write(OK)
        await writer.drain()

    server = await serve(slow_then_drop)
    client = Origin(server.url, tls=None, connect_timeout=2, read_timeout=2, max_connections=2)
    for _ in range(3):
        with pytest.raises(httpx.ReadError):
            await post(client)
    answers = await asyncio.gather(*(post(client) for _ in range(8)))
    assert [a.status for a in answers] == [200] * 8
    assert server.connections == 3 + 2  # the three that died, then never more than two at once


async def test_a_request_waits_for_a_free_connection_no_longer_than_the_connect_timeout(serve) -> None:
    async def silent(reader: asyncio.StreamReader, _w: asyncio.StreamWriter, _s: Server) -> None:
        await reader.read()

    server = await serve(silent)
    client = Origin(server.url, tls=None, connect_timeout=0.2, read_timeout=5, max_connections=1)
    busy = asyncio.create_task(post(client))
    await asyncio.sleep(0.05)
    with pytest.raises(httpx.PoolTimeout, match="stayed busy"):
        await post(client)
    busy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await busy
    assert server.connections == 1
    second = asyncio.create_task(post(client))  # the cancelled request's slot is free again
    await eventually(lambda: server.connections == 2)
    second.cancel()
