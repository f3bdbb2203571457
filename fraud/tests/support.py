"""Requests the fraud tests send again and again: scores, outcomes, features."""

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from fraud.tests.clock import SettableClock
from kit.testing import TestIssuer, app_client

# The operator the tests act as; deny-list entries are signed with this id.
OPERATOR_ID = "ops-anna"


@dataclass(frozen=True)
class Clients:
    """One fraud app, seen by each kind of caller."""

    anonymous: httpx.AsyncClient
    worker: httpx.AsyncClient  # the saga's worker: fraud:score
    operator: httpx.AsyncClient  # reviewers and rule owners: OPERATOR_SCOPES


@asynccontextmanager
async def clients(app: FastAPI, issuer: TestIssuer) -> AsyncIterator[Clients]:
    """Clients for `app` (lifespan started once, by the anonymous one) with their tokens."""
    async with app_client(app) as anonymous:

        def authenticated(headers: dict[str, str]) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url=str(anonymous.base_url),
                headers=headers,
            )

        async with (
            authenticated(issuer.worker()) as worker,
            authenticated(issuer.operator(OPERATOR_ID)) as operator,
        ):
            yield Clients(anonymous=anonymous, worker=worker, operator=operator)


def score_request(**overrides: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transfer_id": str(uuid.uuid4()),
        "source_account_id": str(uuid.uuid4()),
        "target_account_id": str(uuid.uuid4()),
        "amount_minor": 125_00,
        "currency": "EUR",
    }
    body.update(overrides)
    return body


def codes(score: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in score["reasons"]]


async def score(worker: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    """Score a new transfer (201); the score, with the request under `request`."""
    request = score_request(**overrides)
    response = await worker.post("/v1/scores", json=request)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return {**body, "request": request}


def outcome_for(
    scored: dict[str, Any], final_status: str, occurred_at: datetime, **overrides: object
) -> dict[str, Any]:
    """The saga's outcome report for a transfer scored by `score`."""
    request = scored["request"]
    return {
        "transfer_id": request["transfer_id"],
        "source_account_id": request["source_account_id"],
        "target_account_id": request["target_account_id"],
        "amount_minor": request["amount_minor"],
        "currency": request["currency"],
        "final_status": final_status,
        "review_decision": None,
        "occurred_at": occurred_at.isoformat(),
        **overrides,
    }


async def report(worker: httpx.AsyncClient, outcome: dict[str, Any]) -> httpx.Response:
    return await worker.post("/v1/outcomes", json=outcome)


async def completed(
    worker: httpx.AsyncClient, clock: SettableClock, **overrides: object
) -> dict[str, Any]:
    """Score a transfer now and report it completed now; the score."""
    scored = await score(worker, **overrides)
    response = await report(worker, outcome_for(scored, "completed", clock.now))
    assert response.status_code == 201, response.text
    return scored


async def features(
    operator: httpx.AsyncClient, account_id: str, currency: str = "EUR", **params: str
) -> dict[str, Any]:
    response = await operator.get(
        f"/v1/admin/accounts/{account_id}/features", params={"currency": currency, **params}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def logged_events() -> Iterator[list[dict[str, Any]]]:
    """The structlog event dicts logged inside the block (enter it after create_app, which
    replaces the root logger's handlers)."""
    events: list[dict[str, Any]] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, dict):
                events.append(record.msg)

    handler = Collector()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield events
    finally:
        root.removeHandler(handler)
