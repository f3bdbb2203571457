"""The four services' APIs, called with the signed-in staff member's own token: each service
decides what the member may do, and the console shows its refusal as it comes."""

from collections.abc import Mapping
from typing import Any, Final

import httpx

from contracts.problem import PROBLEM_CONTENT_TYPE

SERVICE_NAMES: Final = ("accounts", "transactions", "fraud", "notifications")


class ApiError(Exception):
    """A service's refusal (its problem's status, title and detail), or its silence (503)."""

    def __init__(self, *, service: str, status: int, title: str, detail: str | None) -> None:
        super().__init__(f"{service}: {status} {title}")
        self.service = service
        self.status = status
        self.title = title
        self.detail = detail


class BankApi:
    """One httpx client per service, each with its base URL and timeouts (kit.http)."""

    def __init__(self, clients: Mapping[str, httpx.AsyncClient]) -> None:
        assert set(clients) == set(SERVICE_NAMES), sorted(clients)
        self.clients = clients

    async def get(
        self,
        service: str,
        path: str,
        *,
        token: str,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        return await self._call(service, "GET", path, token=token, params=params)

    async def post(self, service: str, path: str, *, token: str, body: object) -> Any:
        return await self._call(service, "POST", path, token=token, body=body)

    async def put(self, service: str, path: str, *, token: str, body: object) -> Any:
        return await self._call(service, "PUT", path, token=token, body=body)

    async def delete(self, service: str, path: str, *, token: str) -> Any:
        return await self._call(service, "DELETE", path, token=token)

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str,
        params: Mapping[str, str] | None = None,
        body: object = None,
    ) -> Any:
        try:
            response = await self.clients[service].request(
                method,
                path,
                params=params,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise ApiError(
                service=service,
                status=503,
                title="Service unavailable",
                detail=f"The {service} service did not answer ({type(error).__name__}).",
            ) from error
        if response.is_success:
            return response.json() if response.content else None
        raise _refusal(service, response)


def _refusal(service: str, response: httpx.Response) -> ApiError:
    title, detail = response.reason_phrase or "Refused", None
    if response.headers.get("content-type", "").startswith(PROBLEM_CONTENT_TYPE):
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        if isinstance(problem, dict):
            title = str(problem.get("title") or title)[:200]
            detail = None if problem.get("detail") is None else str(problem["detail"])[:500]
    return ApiError(service=service, status=response.status_code, title=title, detail=detail)
