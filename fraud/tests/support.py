"""Requests the fraud tests send again and again: scores, outcomes, features."""

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from fraud.tests.clock import SettableClock


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


async def score(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    """Score a new transfer (201); the score, with the request under `request`."""
    request = score_request(**overrides)
    response = await client.post("/v1/scores", json=request)
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


async def report(client: httpx.AsyncClient, outcome: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/outcomes", json=outcome)


async def completed(
    client: httpx.AsyncClient, clock: SettableClock, **overrides: object
) -> dict[str, Any]:
    """Score a transfer now and report it completed now; the score."""
    scored = await score(client, **overrides)
    response = await report(client, outcome_for(scored, "completed", clock.now))
    assert response.status_code == 201, response.text
    return scored


async def features(
    client: httpx.AsyncClient, account_id: str, currency: str = "EUR", **params: str
) -> dict[str, Any]:
    response = await client.get(
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
