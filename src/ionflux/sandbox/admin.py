"""The `/_sandbox/` admin endpoints, and `SandboxControl`, a small client for them.

They let another process (the demo, `ionflux sandbox`, a test driving a subprocess) script faults and read
the request log of a running simulator, exactly as `sim.faults` does in-process.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ionflux.sandbox.faults import Fault, FaultScript, RateLimitRule, RecordedRequest


def admin_app(script: FaultScript) -> Starlette:
    async def requests_(request: Request) -> Response:
        if request.method == "DELETE":
            script.clear_requests()
            return Response(status_code=204)
        since = int(request.query_params.get("since", "0"))
        return JSONResponse([r.to_dict() for r in script.requests[since:]])

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            script.clear()
            return Response(status_code=204)
        if request.method == "POST":
            data = await request.json()
            items = data if isinstance(data, list) else [data]
            try:
                script.push(*(Fault.from_dict(item) for item in items))
            except TypeError as exc:
                return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
            return JSONResponse({"pending": len(script.pending())}, status_code=201)
        return JSONResponse([f.to_dict() for f in script.pending()])

    async def latency(request: Request) -> Response:
        if request.method == "PUT":
            script.latency = float((await request.json())["seconds"])
        return JSONResponse({"seconds": script.latency})

    async def rate_limits(request: Request) -> Response:
        if request.method == "DELETE":
            script.clear_rate_limits()
            return Response(status_code=204)
        try:
            rule = script.add_rate_limit(RateLimitRule(**(await request.json())))
        except TypeError as exc:
            return JSONResponse({"error": f"bad rate limit: {exc}"}, status_code=400)
        return JSONResponse(rule.to_dict(), status_code=201)

    async def reset(request: Request) -> Response:
        script.reset_all()
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/_sandbox/requests", requests_, methods=["GET", "DELETE"]),
            Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/latency", latency, methods=["GET", "PUT"]),
            Route("/_sandbox/rate-limits", rate_limits, methods=["POST", "DELETE"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/health", health, methods=["GET"]),
        ]
    )


class SandboxControl:
    """Script a simulator running elsewhere (another thread or process) through its admin endpoints."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/_sandbox", timeout=timeout)

    def push(self, *faults: Fault) -> None:
        self._client.post("/faults", json=[f.to_dict() for f in faults]).raise_for_status()

    def clear(self) -> None:
        self._client.delete("/faults").raise_for_status()

    def set_latency(self, seconds: float) -> None:
        self._client.put("/latency", json={"seconds": seconds}).raise_for_status()

    def add_rate_limit(self, rule: RateLimitRule) -> None:
        self._client.post("/rate-limits", json=rule.to_dict()).raise_for_status()

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        response = self._client.get("/requests", params={"since": since})
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()
        return data

    def reset(self) -> None:
        self._client.post("/reset").raise_for_status()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RecordedRequest", "SandboxControl", "admin_app"]
