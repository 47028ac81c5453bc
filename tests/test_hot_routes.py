"""Hot routes: the webhook receiver and the LLM per-call routes are served by plain Starlette routes
matched before the API routers, while the API keeps them in its OpenAPI schema and error format."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from ionflux.app import create_app
from ionflux.core.platform import Platform
from ionflux.core.service import served_directly

HOT = {("POST", "/webhooks/{provider}"), ("GET", "/webhooks/{provider}"),
       ("POST", "/webhooks/{provider}/{connection_id}"), ("GET", "/webhooks/{provider}/{connection_id}"),
       ("POST", "/v1/llm/requests"), ("POST", "/v1/chat/completions"), ("POST", "/v1/embeddings")}


async def test_hot_routes_come_first_and_stay_documented(platform: Platform) -> None:
    app = create_app(platform, manage_lifecycle=False)
    assert all(type(r) is Route for r in app.hot_routes)  # plain Starlette routes, not FastAPI's APIRoute
    assert {(m, r.path) for r in app.hot_routes for m in r.methods or () if m != "HEAD"} == HOT
    schema = app.openapi()["paths"]
    assert "post" in schema["/v1/chat/completions"] and "post" in schema["/v1/llm/requests"]
    assert not any(p.startswith("/webhooks/") for p in schema)  # the receiver was never documented
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        denied = await client.post("/v1/chat/completions", json={"model": "openai:gpt-4o", "messages": []})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "AUTH_FAILED"
        assert denied.headers["x-request-id"]  # the app's own middleware still wraps the hot routes
        assert denied.json()["error"]["request_id"] == denied.headers["x-request-id"]
        unknown = await client.post("/webhooks/nope", content=b"{}")
        assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
        big = await client.post("/v1/chat/completions", content=b"x" * (platform.settings.max_body_bytes + 1))
        assert big.status_code == 413 and big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        wrong_method = await client.delete("/v1/chat/completions")  # not a hot route: FastAPI answers
        assert wrong_method.status_code == 405 and wrong_method.headers["x-request-id"]


async def test_a_hot_route_that_fails_unexpectedly_answers_500_in_the_app_format(platform: Platform) -> None:
    app = create_app(platform, manage_lifecycle=False)

    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail")

    app.serve_hot([Route("/boom", broken, methods=["POST"])], platform.metrics, 1000, {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answer = await client.post("/boom")
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "secret" not in answer.text and answer.headers["x-request-id"]


def test_only_request_taking_endpoints_can_be_served_directly() -> None:
    router = APIRouter()

    async def plain(request: Request) -> Response:
        return Response()

    async def with_dependency(request: Request, value: str = Depends(lambda: "x")) -> Response:
        return Response()

    router.add_api_route("/plain", plain, methods=["POST"])
    router.add_api_route("/dep", with_dependency, methods=["POST"])
    [route] = served_directly([router], "POST /plain")
    assert isinstance(route, Route) and not isinstance(route, APIRoute) and route.endpoint is plain
    with pytest.raises(TypeError, match="POST /dep"):
        served_directly([router], "POST /dep")
    with pytest.raises(LookupError, match="GET /plain"):
        served_directly([router], "GET /plain")
