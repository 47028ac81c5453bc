"""Signed Shopify-style webhooks (2 KB) at a running `ionflux serve`, next to a bare Starlette baseline
doing the same HMAC check and a single-row insert, measured in the same run, on SQLite and PostgreSQL.

    .venv/bin/python bench/webhooks.py                         # both databases, 1/16/64 senders
    .venv/bin/python bench/webhooks.py --db sqlite --duration 5

The server (either one) is pinned to --server-cpu and the load generator, wrk with a Lua script that
gives every request a fresh X-Shopify-Webhook-Id / Event-Id (so nothing is a duplicate), to --load-cpu.
Both servers run uvicorn with uvloop + httptools, no access log, log level WARNING. `ionflux serve`
runs its outbox relay and consumers too (the events are published while the load runs), as it does in
production: in its child worker process (inheriting the server's CPU pinning, so on the same core);
the CPU figures include that child.
Both servers run at once (idle while the other is measured) and runs are interleaved, median of rounds;
IONFLUX's outbox is drained before and after each of its runs (so its catch-up never lands on the
baseline's run), the CPU per request includes that catch-up, and the catch-up time is printed.
Targets: accepted/s >= 0.80 x baseline, p99 <= 1.25 x baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from proc_cpu import cpu_seconds  # bench/ is the script's directory

from ionflux.core.db import Database
from ionflux.core.models import Connection
from ionflux.core.workspaces import WorkspaceDirectory

SECRET = "shpss_bench_secret_0123456789abcdef"
SHOP = "bench.myshopify.com"
PG_ADMIN_DSN = os.environ.get("IONFLUX_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
HERE = Path(__file__).resolve().parent


@dataclass
class Run:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms: float = 0.0  # the server's CPU time (user + system) per accepted request, catch-up included
    drain_s: float = 0.0  # seconds after the run until everything accepted was published


    @property
    def accepted_per_s(self) -> float:
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def order_body(size: int) -> bytes:
    # The fields of a REST order webhook that the Shopify consumer's normaliser needs (updated_at among them),
    # so each delivery also costs its real background work: the order upserted into shopify_orders.
    order = {"id": 820982911946154508, "name": "#1001", "email": "jon@example.com",
             "created_at": "2026-11-27T01:00:00-05:00", "updated_at": "2026-11-27T01:00:00-05:00",
             "subtotal_price": "598.94", "total_tax": "0.00", "total_price": "598.94",
             "currency": "USD", "financial_status": "paid",
             "line_items": [{"id": 466157049, "title": "IPod Nano - 8gb", "quantity": 1, "price": "199.00",
                             "sku": "IPOD2008GREEN", "vendor": None}],
             "shipping_address": {"first_name": "Steve", "address1": "123 Shipping Street", "city": "Shippington",
                                  "country_code": "US", "zip": "40003"}, "note": ""}
    base = len(json.dumps(order, separators=(",", ":")).encode())
    order["note"] = "n" * max(0, size - base)
    return json.dumps(order, separators=(",", ":")).encode()


def lua_script(body: bytes) -> str:
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    prefix = uuid.uuid4().hex[:12]
    return f"""
local counter = 0
local body = [==[{body.decode()}]==]
request = function()
  counter = counter + 1
  local id = "{prefix}-" .. counter
  return wrk.format("POST", "/webhooks/shopify", {{
    ["Content-Type"] = "application/json", ["X-Shopify-Hmac-Sha256"] = "{signature}",
    ["X-Shopify-Topic"] = "orders/create", ["X-Shopify-Shop-Domain"] = "{SHOP}",
    ["X-Shopify-Webhook-Id"] = id, ["X-Shopify-Event-Id"] = id, ["X-Shopify-API-Version"] = "2026-07"}}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, script: Path, connections: int, seconds: float, cpu: int) -> Run:
    out = subprocess.run(
        ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    requests, micros, non2xx, errors, p50, p99 = (int(v) for v in line.split()[1:])
    return Run(requests, micros / 1e6, non2xx, errors, p50 / 1000, p99 / 1000)


class Server:
    def __init__(self, argv: list[str], env: dict[str, str], cpu: int, port: int, workdir: Path) -> None:
        self.port = port
        log = (workdir / f"server-{port}.log").open("ab")
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu), *argv], env={**os.environ, **env}, cwd=workdir,
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {workdir}/server-{port}.log")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pending_events(url: str) -> int:
    """Outbox rows not yet published (what a server still owes after its run)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split(":///", 1)[1], timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox_events WHERE status = 'pending'").fetchone()[0])

    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM outbox_events WHERE status = 'pending'"))
        finally:
            await conn.close()

    return asyncio.run(count())


def drain(url: str | None, limit: float = 300.0) -> float:
    """Wait until every accepted delivery is published; returns the seconds that took."""
    started = time.monotonic()
    while url is not None and pending_events(url) and time.monotonic() - started < limit:
        time.sleep(0.1)
    return time.monotonic() - started


def measure(
    servers: dict[str, Server], urls: dict[str, str | None], body: bytes, workdir: Path, args: argparse.Namespace
) -> dict[str, dict[int, Run]]:
    """Interleaved: for each concurrency, each round runs every server once, so drift in the machine's
    load (other processes) hits both sides alike; the median round is reported. Before each run and after
    it, IONFLUX's outbox is drained (everything accepted is published), so no server's run pays for the
    other's catch-up; the CPU per request includes the catch-up, and its duration is reported."""
    results: dict[str, dict[int, Run]] = {name: {} for name in servers}
    for c in args.concurrency:
        runs: dict[str, list[Run]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, server in servers.items():
                url = f"http://127.0.0.1:{server.port}"
                script = workdir / f"{name}-{c}.lua"
                script.write_text(lua_script(body))  # fresh ids every run: nothing is a duplicate
                wrk(url, script, c, args.warmup, args.load_cpu)
                drain(urls[name])
                script.write_text(lua_script(body))
                before = cpu_seconds(server.proc.pid)
                run = wrk(url, script, c, args.duration, args.load_cpu)
                run.drain_s = drain(urls[name])
                accepted = run.requests - run.non_2xx
                run.cpu_ms = (cpu_seconds(server.proc.pid) - before) * 1000 / accepted if accepted else 0.0
                runs[name].append(run)
        for name in servers:
            ordered = sorted(runs[name], key=lambda r: r.accepted_per_s)
            results[name][c] = run = ordered[len(ordered) // 2]
            print(f"  {name:9} c={c:<3} {run.accepted_per_s:8.0f} accepted/s  p50 {run.p50_ms:6.2f} ms  "
                  f"p99 {run.p99_ms:6.2f} ms  CPU {run.cpu_ms:5.2f} ms/req  non-2xx {run.non_2xx}  "
                  f"socket errors {run.socket_errors}  all published {run.drain_s:4.1f} s after the run  "
                  f"(rounds: {', '.join(f'{r.accepted_per_s:.0f}' for r in runs[name])})", flush=True)
    return results


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _prepare(url: str) -> None:
    db = Database(url)
    db.upgrade()
    created = await WorkspaceDirectory(db).create("bench")
    async with db.tenant(created.id) as session:
        session.add(Connection(provider="shopify", external_id=SHOP))
    await db.dispose()


def bench_database(kind: str, args: argparse.Namespace) -> dict[str, dict[int, Run]]:
    workdir = Path(tempfile.mkdtemp(prefix=f"ionflux-bench-{kind}-"))
    # name -> (extra `serve` arguments, extra environment). Every server gets its own database: one sharing
    # its outbox with another would relay (and compete for the write lock on) the other's events.
    ours: dict[str, tuple[list[str], dict[str, str]]] = {"ionflux": ([], {})}
    if args.ingest_only:
        # Ingestion alone, as the baseline does: the relay is left to an `ionflux worker` (not run here).
        ours["ingest"] = (["--no-worker"], {})
    for variant in args.variant:
        name, _, assignments = variant.partition(":")
        ours[name] = ([], dict(a.split("=", 1) for a in assignments.split(",") if a))
    names = {name: f"ionflux_bench_{uuid.uuid4().hex[:8]}" for name in ["baseline", *ours]}
    if kind == "sqlite":
        urls = {name: f"sqlite+aiosqlite:///{workdir / f'{name}.db'}" for name in names}
    else:
        for db_name in names.values():
            asyncio.run(_pg(f'CREATE DATABASE "{db_name}"'))
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        urls = {name: f"{base}/{db_name}" for name, db_name in names.items()}
    env = {"IONFLUX_SHOPIFY_CLIENT_SECRET": SECRET, "IONFLUX_LOG_LEVEL": "WARNING",
           "IONFLUX_DATA_DIR": str(workdir / "data"), "IONFLUX_BUS_URL": "embedded://"}
    body = order_body(args.body_bytes)
    servers: dict[str, Server] = {}
    try:
        for name in ours:
            asyncio.run(_prepare(urls[name]))
        print(f"{kind}: body {len(body)} bytes, {args.duration:.0f} s per run, {args.rounds} rounds", flush=True)
        port = free_port()
        servers["baseline"] = Server([sys.executable, str(HERE / "webhooks_baseline.py"), "--port", str(port),
                                      "--database-url", urls["baseline"]], env, args.server_cpu, port, workdir)
        for name, (extra_args, extra_env) in ours.items():
            port = free_port()
            servers[name] = Server([sys.executable, "-m", "ionflux.cli", "serve", *extra_args, "--port", str(port)],
                                   {**env, **extra_env, "IONFLUX_DATABASE_URL": urls[name]}, args.server_cpu, port,
                                   workdir)
        # Nothing to drain where nothing publishes: the baseline, and `--no-worker` (ingestion alone).
        outboxes: dict[str, str | None] = {name: (None if name in ("baseline", "ingest") else url)
                                           for name, url in urls.items()}
        return measure(servers, outboxes, body, workdir, args)
    finally:
        for server in servers.values():
            server.stop()
        if kind == "postgres":
            for db_name in names.values():
                asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per point (median shown)")
    parser.add_argument("--ingest-only", action="store_true",
                        help="also measure `serve --no-worker` (ingestion without the in-process relay)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                        help="also measure `ionflux serve` with these environment settings, e.g. "
                             "writers2:IONFLUX_WEBHOOK_INBOX_WRITERS=2 (repeatable)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--body-bytes", type=int, default=2048)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/webhooks.py needs wrk (apt-get install -y wrk)")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    table = []
    for kind in kinds:
        if kind == "postgres":
            try:
                asyncio.run(_pg("SELECT 1"))
            except OSError:
                print("postgres: not reachable on 127.0.0.1:5432, skipped")
                continue
        results = bench_database(kind, args)
        for name in [n for n in results if n != "baseline"]:
            for c in args.concurrency:
                table.append((kind, name, c, results["baseline"][c], results[name][c]))
    print("\n db        server   senders  baseline/s  ours/s  ratio   p50 base/ours ms   p99 base/ours ms  "
          "p99 ratio  CPU ms/req base/ours  target")
    for kind, name, c, b, o in table:
        ratio = o.accepted_per_s / b.accepted_per_s if b.accepted_per_s else 0.0
        p99 = o.p99_ms / b.p99_ms if b.p99_ms else 0.0
        ok = "ok" if ratio >= 0.8 and p99 <= 1.25 else "MISSED"
        print(f" {kind:9} {name:8} {c:7d}  {b.accepted_per_s:10.0f}  {o.accepted_per_s:6.0f}  {ratio:5.2f}   "
              f"{b.p50_ms:6.2f} / {o.p50_ms:6.2f}    {b.p99_ms:7.2f} / {o.p99_ms:7.2f}  {p99:9.2f}  "
              f"{b.cpu_ms:8.2f} / {o.cpu_ms:5.2f}    {ok}")


if __name__ == "__main__":
    main()
