"""An HTTP client for tests: one cookie jar per user, signs in through the real login API."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient


class ApiClient:
    """Wraps aiohttp's TestClient; remembers the session's CSRF token for non-JSON unsafe requests."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.csrf = ""
        self.me: dict[str, Any] = {}

    async def login(self, username: str, password: str) -> ApiClient:
        response = await self.client.post("/api/v1/session", json={"username": username, "password": password})
        body = await response.json()
        assert response.status == 200, body
        self.me = body
        self.csrf = body["csrf_token"]
        return self

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = {"X-CSRF-Token": self.csrf} if self.csrf else {}
        merged.update(headers or {})
        return merged

    async def get(self, path: str, **kwargs: Any) -> ClientResponse:
        return await self.client.get(path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> ClientResponse:
        if json is not None:
            return await self.client.post(path, json=json, **kwargs)
        return await self.client.post(path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    async def patch(self, path: str, json: Any, **kwargs: Any) -> ClientResponse:
        return await self.client.patch(path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> ClientResponse:
        return await self.client.delete(path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    async def get_json(self, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.get(path, **kwargs)
        body = await response.json()
        assert response.status == expect, (response.status, body)
        return body

    async def post_json(self, path: str, json: Any, expect: int = 200) -> Any:
        response = await self.post(path, json=json)
        body = await response.json()
        assert response.status == expect, (response.status, body)
        return body

    async def patch_json(self, path: str, json: Any, expect: int = 200) -> Any:
        response = await self.patch(path, json=json)
        body = await response.json()
        assert response.status == expect, (response.status, body)
        return body
