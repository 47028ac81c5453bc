"""Fetch a URL that a caller gave us without letting it reach inside our network (SSRF).

    fetcher = SafeFetcher(FetchPolicy(max_bytes=25 << 20, content_types=("audio/",)))
    fetched = await fetcher.fetch(url, field="audio_input_url")

Rules: http(s) only, no credentials in the URL; the host is resolved once and EVERY address it resolves to
must be public (not private, loopback, link-local — the 169.254.169.254 metadata service included —,
shared, reserved, multicast or unspecified; IPv6 loopback, ULA and link-local too, and IPv4 embedded in
IPv6 (mapped, NAT64, 6to4, Teredo) is judged as the IPv4 it carries); the connection then goes to that
checked address (the Host header and TLS SNI keep the name), so a second DNS answer cannot rebind it;
every redirect is checked again from the start; the body is cut at `max_bytes`, the whole fetch at
`timeout` seconds, and the content type must match. `allow_networks` exempts CIDRs (the sandbox's
loopback simulators), nothing else. Proxies from the environment are ignored: a proxy would resolve the
name itself. Every refusal is an InvalidRequest naming the field.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from ionflux.core.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    timeout: float = 10.0
    content_types: tuple[str, ...] = ()  # prefixes, e.g. ("image/",); empty: any
    max_redirects: int = 3
    allow_networks: tuple[str, ...] = ()  # CIDRs exempt from the address check (sandbox only)


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content: bytes
    content_type: str  # without parameters, lower case
    headers: dict[str, str] = field(default_factory=dict)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public(ip: IPAddress) -> bool:
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


class SafeFetcher:
    def __init__(self, policy: FetchPolicy, *, resolver: Resolver | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or system_resolver
        self.allowed = tuple(ipaddress.ip_network(n, strict=False) for n in policy.allow_networks)
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False, transport=transport,
                                         timeout=httpx.Timeout(policy.timeout))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, *, field: str) -> Fetched:
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await self._follow(url, field)
        except TimeoutError:
            raise InvalidRequest(f"{field}: the URL did not answer within {self.policy.timeout:g} s",
                                 field=field) from None
        except httpx.HTTPError as exc:
            raise InvalidRequest(f"{field}: the URL could not be fetched ({type(exc).__name__})", field=field) from None

    async def _follow(self, url: str, field: str) -> Fetched:
        for _hop in range(self.policy.max_redirects + 1):
            target, host_header, sni = await self._checked(url, field)
            extensions = {"sni_hostname": sni} if sni else {}
            headers = {"host": host_header, "accept": "*/*", "accept-encoding": "identity"}
            request = self._client.build_request("GET", target, headers=headers, extensions=extensions)
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise InvalidRequest(f"{field}: a redirect without a Location", field=field)
                    url = urljoin(url, location)
                    continue
                if response.status_code >= 400:
                    raise InvalidRequest(f"{field}: the URL answered {response.status_code}", field=field)
                return await self._read(url, response, field)
            finally:
                await response.aclose()
        raise InvalidRequest(f"{field}: more than {self.policy.max_redirects} redirects", field=field)

    async def _checked(self, url: str, field: str) -> tuple[httpx.URL, str, str | None]:
        """The URL rewritten to a checked IP address, the Host header to send, and the TLS server name."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise InvalidRequest(f"{field}: not a valid URL", field=field) from None
        if parsed.scheme not in ("http", "https"):
            raise InvalidRequest(f"{field}: only http and https URLs can be fetched", field=field)
        if parsed.userinfo:
            raise InvalidRequest(f"{field}: URLs with credentials are not fetched", field=field)
        host = parsed.host
        if not host:
            raise InvalidRequest(f"{field}: the URL has no host", field=field)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = await self._address(host, port, field)
        literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        host_header = f"[{host}]" if ":" in host else host
        if parsed.port is not None:
            host_header += f":{parsed.port}"
        sni = host if parsed.scheme == "https" and _literal(host) is None else None
        return parsed.copy_with(host=literal.strip("[]")), host_header, sni

    async def _address(self, host: str, port: int, field: str) -> IPAddress:
        literal = _literal(host)
        if literal is not None:
            addresses: Sequence[IPAddress] = [literal]
        else:
            try:
                found = await self.resolver(host, port)
            except OSError:
                raise InvalidRequest(f"{field}: the host {host!r} does not resolve", field=field) from None
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
            if not addresses:
                raise InvalidRequest(f"{field}: the host {host!r} does not resolve", field=field)
        for address in addresses:
            if not self._permitted(address):
                raise InvalidRequest(
                    f"{field}: the URL points to a private, loopback, link-local or otherwise internal address; "
                    "only public addresses are fetched", field=field)
        return addresses[0]

    def _permitted(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed):
            return True
        return is_public(address)

    async def _read(self, url: str, response: httpx.Response, field: str) -> Fetched:
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        wanted = self.policy.content_types
        if wanted and not any(content_type.startswith(p) for p in wanted):
            raise InvalidRequest(f"{field}: the URL serves {content_type or 'no content type'}, expected "
                                 f"{' or '.join(p + '*' if p.endswith('/') else p for p in wanted)}", field=field)
        declared = response.headers.get("content-length", "")
        limit = self.policy.max_bytes
        if declared.isdigit() and int(declared) > limit:
            raise InvalidRequest(f"{field}: the file is larger than {limit} bytes", field=field)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decoded: a compressed bomb counts in full
            size += len(chunk)
            if size > limit:
                raise InvalidRequest(f"{field}: the file is larger than {limit} bytes", field=field)
            chunks.append(chunk)
        return Fetched(url, b"".join(chunks), content_type, dict(response.headers))


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
