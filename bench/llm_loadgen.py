"""A lean HTTP/1.1 load generator for bench/llm_gateway.py: C keep-alive connections POST the same JSON body
and record each request's latency. Run as a separate process so its CPU is not the server's.

    python bench/llm_loadgen.py URL TOKEN CONCURRENCY REQUESTS BODY_FILE   # prints JSON {latencies, seconds, errors}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def worker(host: str, port: int, request: bytes, count: int, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def main() -> None:
    url, token, body_file = sys.argv[1], sys.argv[2], sys.argv[5]
    concurrency, total = int(sys.argv[3]), int(sys.argv[4])
    parts = urlsplit(url)
    body = open(body_file, "rb").read()  # noqa: ASYNC230 - read once before the clock starts
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    share = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(worker(parts.hostname or "127.0.0.1", parts.port or 80, request, n, latencies, errors)
                           for n in share if n))
    seconds = time.perf_counter() - started
    print(json.dumps({"latencies": latencies, "seconds": seconds, "errors": len(errors),
                      "statuses": sorted(set(errors))[:5]}))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
