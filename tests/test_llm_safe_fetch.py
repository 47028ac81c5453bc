"""core.safe_fetch refuses every SSRF route we know: internal addresses (literal, odd IPv4 forms, IPv6 and
IPv4 inside IPv6), names resolving to them, redirects to them, DNS rebinding; and bounds size, time, type.

Refused addresses are refused before any connection: no traffic leaves loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ionflux.core.errors import InvalidRequest
from ionflux.core.safe_fetch import FetchPolicy, SafeFetcher
from ionflux.sandbox import Fault, SimulatorServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LOOPBACK = ("127.0.0.1/32",)


def app() -> Starlette:
    async def image(_: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async def html(_: Request) -> Response:
        return Response("<html>", media_type="text/html")

    async def big(_: Request) -> Response:
        return Response(b"\x00" * 5000, media_type="image/png")

    async def chunked(_: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"\x00" * 1000
        return StreamingResponse(body(), media_type="image/png")

    async def redirect(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def host(request: Request) -> Response:
        return Response(PNG, media_type="image/png", headers={"x-seen-host": request.headers["host"]})

    return Starlette(routes=[Route("/img.png", image), Route("/page", html), Route("/big", big),
                             Route("/chunked", chunked), Route("/redirect", redirect), Route("/host", host)])


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(app(), name="media") as s:
        yield s


class FakeDNS:
    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        options = self.answers[host]
        return options[min(len(self.calls) - 1, len(options) - 1)]


def fetcher(resolver: FakeDNS | None = None, allow: tuple[str, ...] = (), **policy: object) -> SafeFetcher:
    return SafeFetcher(FetchPolicy(content_types=("image/",), allow_networks=allow, **policy),  # type: ignore[arg-type]
                       resolver=resolver)


async def refused(f: SafeFetcher, url: str, words: str = "private") -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        await f.fetch(url, field="image_input_url")
    assert info.value.field == "image_input_url"
    assert words in info.value.message, info.value.message
    return info.value


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://127.9.9.9/x", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x",
    "http://10.255.255.254/x", "http://172.16.0.1/x", "http://192.168.1.1/x", "http://100.64.0.1/x",
    "http://0.0.0.0/x", "http://[::1]/x", "http://[fd00::1]/x", "http://[fe80::1]/x", "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:169.254.169.254]/x", "http://[64:ff9b::a00:1]/x", "http://[2002:7f00:1::]/x",
    "http://224.0.0.1/x",
])
async def test_internal_literal_addresses_are_refused(url: str) -> None:
    await refused(fetcher(), url)


@pytest.mark.parametrize("url", ["http://2130706433/x", "http://0x7f000001/x", "http://127.1/x", "http://localhost/x"])
async def test_odd_ipv4_forms_and_localhost_resolve_to_loopback_and_are_refused(url: str) -> None:
    await refused(fetcher(), url)


async def test_names_resolving_to_internal_addresses_are_refused() -> None:
    dns = FakeDNS({"evil.test": [["127.0.0.1"]], "meta.test": [["169.254.169.254"]], "ten.test": [["10.1.2.3"]],
                   "v6.test": [["::1"]], "mixed.test": [["93.184.216.34", "10.0.0.5"]]})
    for host in dns.answers:
        await refused(fetcher(dns), f"http://{host}/img.png")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.com/x",
                                 "http://user:pw@example.com/x"])
async def test_other_schemes_and_credentials_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        await fetcher().fetch(url, field="image_input_url")


async def test_loopback_is_refused_even_with_a_server_listening(server: SimulatorServer) -> None:
    await refused(fetcher(), server.base_url + "/img.png")
    assert server.requests == [] or all(r.path != "/img.png" for r in server.requests)


async def test_allow_list_lets_the_sandbox_through(server: SimulatorServer) -> None:
    got = await fetcher(allow=LOOPBACK).fetch(server.base_url + "/img.png", field="f")
    assert got.content == PNG and got.content_type == "image/png"


async def test_redirects_to_internal_addresses_are_refused(server: SimulatorServer) -> None:
    dns = FakeDNS({"evil.test": [["10.0.0.1"]]})
    f = fetcher(dns, allow=LOOPBACK)
    for target in ("http://169.254.169.254/latest/meta-data/", "http://evil.test/x", "http://[::1]/x",
                   "file:///etc/passwd"):
        with pytest.raises(InvalidRequest):
            await f.fetch(f"{server.base_url}/redirect?to={target}", field="image_input_url")
    hops = f"{server.base_url}/redirect?to={server.base_url}/redirect%3Fto%3D{server.base_url}/img.png"
    assert (await f.fetch(hops, field="f")).content == PNG
    await refused(fetcher(dns, allow=LOOPBACK, max_redirects=1), hops, "redirects")


async def test_dns_rebinding_cannot_move_the_connection(server: SimulatorServer) -> None:
    dns = FakeDNS({"rebind.test": [["127.0.0.1"], ["10.0.0.1"]]})  # first answer checked, later ones internal
    got = await fetcher(dns, allow=LOOPBACK).fetch(f"http://rebind.test:{server.port}/host", field="f")
    assert dns.calls == ["rebind.test"]  # resolved once; the connection went to the checked address
    assert got.headers["x-seen-host"] == f"rebind.test:{server.port}"


async def test_size_time_type_and_status_limits(server: SimulatorServer) -> None:
    small = fetcher(allow=LOOPBACK, max_bytes=2000)
    await refused(small, server.base_url + "/big", "larger than 2000")
    await refused(small, server.base_url + "/chunked", "larger than 2000")
    await refused(fetcher(allow=LOOPBACK), server.base_url + "/page", "text/html")
    await refused(fetcher(allow=LOOPBACK), server.base_url + "/missing", "404")
    server.faults.push(Fault.delay(2.0, path="/img.png"))
    await refused(fetcher(allow=LOOPBACK, timeout=0.3), server.base_url + "/img.png", "did not answer")


async def test_contract_refuses_the_metadata_address() -> None:
    from ionflux.llm.media import MediaFetcher
    from ionflux.llm.settings import LLMSettings

    media = MediaFetcher(LLMSettings())
    with pytest.raises(InvalidRequest) as info:
        await media.image("http://169.254.169.254/latest/meta-data/iam")
    assert info.value.field == "image_input_url"
    with pytest.raises(InvalidRequest):
        await media.audio_file("http://[::ffff:10.0.0.1]/a.wav")
    await media.aclose()
