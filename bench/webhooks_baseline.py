"""The benchmark's baseline: a bare Starlette app doing what a webhook receiver minimally must — the
Shopify HMAC check on the raw body (constant time) and one single-row insert committed before the 200 —
under the same uvicorn settings as `ionflux serve` (uvloop + httptools, no access log).

    IONFLUX_SHOPIFY_CLIENT_SECRET=… python bench/webhooks_baseline.py --port 8081 --database-url sqlite+aiosqlite:///x.db
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from sqlalchemy import Column, DateTime, LargeBinary, MetaData, String, Table, func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ionflux.core.db import Database  # the same engine set-up (SQLite WAL pragmas, PostgreSQL pool)

metadata = MetaData()
deliveries = Table(
    "baseline_deliveries", metadata,
    Column("id", String(64), primary_key=True),
    Column("shop", String(255)), Column("topic", String(255)), Column("webhook_id", String(255)),
    Column("body", LargeBinary), Column("received_at", DateTime(timezone=True), server_default=func.now()),
)


def build(database_url: str, secret: bytes) -> Starlette:
    db = Database(database_url)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield
        await db.dispose()

    async def receive(request: Request) -> Response:
        body = await request.body()
        given = request.headers.get("x-shopify-hmac-sha256", "").encode("latin-1")
        expected = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, given):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        async with db.engine.begin() as conn:
            await conn.execute(deliveries.insert().values(
                id=str(uuid.uuid4()), shop=request.headers.get("x-shopify-shop-domain"),
                topic=request.headers.get("x-shopify-topic"), webhook_id=request.headers.get("x-shopify-webhook-id"),
                body=body))
        return JSONResponse({"status": "accepted"})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/webhooks/shopify", receive, methods=["POST"]), Route("/healthz", healthz)],
                     lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    app = build(args.database_url, os.environ["IONFLUX_SHOPIFY_CLIENT_SECRET"].encode())
    # The same call `ionflux serve` makes.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
