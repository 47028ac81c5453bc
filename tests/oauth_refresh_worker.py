"""A second process for the cross-process single-flight test (run by path, not imported).

    python oauth_refresh_worker.py DATABASE_URL DATA_DIR WORKSPACE_ID CONNECTION_ID SIMULATOR_URL CALLERS

Shares the test's database and master key file. Prints "ready" once warmed up, waits for a line on
stdin, then runs CALLERS concurrent `access_token` calls and prints one JSON line:
{"tokens": [...], "stats": {...}}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ionflux.core.db import Database
from ionflux.core.oauth import CATALOGUE, OAuthFlow
from ionflux.core.settings import Settings
from ionflux.core.vault import Vault


async def main(database_url: str, data_dir: str, workspace_id: str, connection_id: str, base_url: str,
               callers: int) -> None:
    settings = Settings(data_dir=Path(data_dir), database_url=database_url, master_key_source="file")
    db = Database(database_url)
    flow = OAuthFlow(db, Vault.from_settings(settings, db), providers={"generic": CATALOGUE["generic"].at(base_url)})
    try:
        await db.ping()  # warm the pool so both processes start their burst at the same moment
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        tokens = await asyncio.gather(*(flow.access_token(workspace_id, connection_id) for _ in range(callers)))
        print(json.dumps({"tokens": tokens, "stats": dict(flow.stats)}), flush=True)
    finally:
        await flow.aclose()
        await db.dispose()


if __name__ == "__main__":
    url, data, ws, conn, base, n = sys.argv[1:7]
    asyncio.run(main(url, data, ws, conn, base, int(n)))
