"""`IonfluxClient`: a workspace token and a base URL, with IONFLUX's error body turned back into exceptions."""

from __future__ import annotations

from typing import Any

import httpx

from ionflux.core import errors

_BY_CODE: dict[str, type[errors.IonfluxError]] = {
    cls.code: cls for cls in (
        errors.InvalidRequest, errors.PayloadTooLarge, errors.AuthFailed, errors.Forbidden, errors.NotFound,
        errors.Conflict, errors.RateLimited, errors.QuotaExceeded, errors.ProviderApiError,
        errors.ProviderUnavailable, errors.ServiceUnavailable)
}


def raise_for_error(response: httpx.Response) -> None:
    """Raise the IonfluxError the server described (same code, message, field and details)."""
    if response.is_success:
        return
    try:
        body = response.json().get("error") or {}
    except ValueError:
        body = {}
    code = str(body.get("code") or "")
    message = str(body.get("message") or f"HTTP {response.status_code} from {response.request.url.path}")
    details = dict(body.get("details") or {})
    details.setdefault("status", response.status_code)
    cls = _BY_CODE.get(code)
    if cls is None:
        details.setdefault("code", code or "HTTP_ERROR")
        cls = errors.ServiceUnavailable if response.status_code >= 500 else errors.InvalidRequest
    raise cls(message, field=body.get("field"), details=details)


class IonfluxClient:
    """Talks to a running IONFLUX as one workspace. `async with IonfluxClient(url, token) as ionflux: ...`"""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None, auth: httpx.Auth | None = None) -> None:
        bearer = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport, auth=auth,
            headers={**bearer, "User-Agent": "ionflux-client"},
        )
        from ionflux.client.agents import AgentsApi
        from ionflux.client.services import EventsApi

        self.agents = AgentsApi(self)
        self.events = EventsApi(self)

    async def __aenter__(self) -> IonfluxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      content: str | bytes | None = None, headers: dict[str, str] | None = None) -> Any:
        """One call; the decoded JSON body (None for 204), or the server's error raised as an IonfluxError."""
        response = await self._http.request(
            method, path, json=json, content=content, headers=headers,
            params={k: v for k, v in (params or {}).items() if v is not None})
        raise_for_error(response)
        return None if response.status_code == 204 or not response.content else response.json()

    async def raw(self, method: str, path: str, *, params: dict[str, Any] | None = None) -> httpx.Response:
        """The response itself (redirects not followed), for flows such as OAuth; errors still raise."""
        response = await self._http.request(method, path, params=params, follow_redirects=False)
        if response.status_code >= 400:
            raise_for_error(response)
        return response

    async def workspace_id(self) -> str:
        return str((await self.request("GET", "/v1/workspace"))["id"])
