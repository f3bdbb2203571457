"""Helpers for service tests: drive an app in-process, lifespan included."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from contracts.problem import PROBLEM_CONTENT_TYPE


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to `app` in-process, with its lifespan started and stopped."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    """Assert an RFC 9457 answer with this status and `urn:sagabank:problem:<slug>` type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    body: dict[str, object] = response.json()
    assert body["type"] == f"urn:sagabank:problem:{slug}", body
    assert body["status"] == status
    assert body["title"]
    return body
