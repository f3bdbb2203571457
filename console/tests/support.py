"""Stand-ins for the issuer and the four services (httpx transports answering as they do),
and the console app wired to them with a clock the test moves."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from contracts.problem import PROBLEM_CONTENT_TYPE

Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    """The console's clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeUpstream:
    """One service (or the issuer): routes by (method, path), and every request it got."""

    name: str
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return problem(404, "Not found")
        return handler(request)

    def answer(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(method, path)] = lambda _request: httpx.Response(status, json=body)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def problem(status: int, title: str, detail: str | None = None) -> httpx.Response:
    body = {"type": "urn:sagabank:problem:x", "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    return httpx.Response(
        status, content=json.dumps(body), headers={"content-type": PROBLEM_CONTENT_TYPE}
    )


def token_answer(
    access_token: str,
    scope: str,
    refresh_token: str = "refresh-1",  # noqa: S107 - a test value
) -> dict[str, Any]:
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 900,
        "scope": scope,
        "refresh_token": refresh_token,
    }
