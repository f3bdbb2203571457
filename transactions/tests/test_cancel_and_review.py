"""POST /v1/transfers/{id}/cancel and POST /v1/admin/transfers/{id}/review: signals to the saga."""

import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from contracts.transfers import (
    SIGNAL_CANCEL,
    SIGNAL_REVIEW_DECISION,
    CancelRequest,
    ReviewDecision,
)
from kit.testing import assert_problem
from transactions.tests.support import create, report, signals, workflow_handle


async def _cancel(client: httpx.AsyncClient, transfer_id: str, **kwargs: Any) -> httpx.Response:
    return await client.post(f"/v1/transfers/{transfer_id}/cancel", **kwargs)


async def _review(
    client: httpx.AsyncClient, transfer_id: str, decision: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"/v1/admin/transfers/{transfer_id}/review", json=decision)


async def _put_in_review(client: httpx.AsyncClient, transfer_id: str) -> None:
    response = await report(
        client, transfer_id, step="score", outcome="review", status="in_review", version=3
    )
    assert response.status_code == 200, response.text


class TestCancelTransfer:
    async def test_valid(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        response = await _cancel(client, transfer["id"], json={"reason": "Wrong payee"})
        assert response.status_code == 202, response.text
        assert response.json()["id"] == transfer["id"]
        assert await signals(temporal, transfer["id"], CancelRequest) == [
            (SIGNAL_CANCEL, CancelRequest(reason="Wrong payee"))
        ]

    async def test_without_body(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        assert (await _cancel(client, transfer["id"])).status_code == 202
        assert await signals(temporal, transfer["id"], CancelRequest) == [
            (SIGNAL_CANCEL, CancelRequest())
        ]

    async def test_while_in_review(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        assert (await _cancel(client, transfer["id"])).status_code == 202

    @pytest.mark.parametrize(
        "status", ["completed", "rejected", "declined", "expired", "cancelled"]
    )
    async def test_terminal_transfer(
        self, client: httpx.AsyncClient, temporal: Client, status: str
    ) -> None:
        transfer = await create(client)
        await report(
            client, transfer["id"], step="notify", outcome="succeeded", status=status, version=9
        )
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")
        assert await signals(temporal, transfer["id"], CancelRequest) == []

    async def test_posting_has_begun(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        await report(
            client, transfer["id"], step="post", outcome="succeeded", status="pending", version=4
        )
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")
        assert await signals(temporal, transfer["id"], CancelRequest) == []

    async def test_workflow_already_closed(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        transfer = await create(client)
        await workflow_handle(temporal, transfer["id"]).terminate(reason="test")
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")

    async def test_unknown_transfer(self, client: httpx.AsyncClient) -> None:
        assert_problem(await _cancel(client, str(uuid.uuid4())), 404, "transfer-not-found")

    async def test_malformed_body(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        response = await _cancel(client, transfer["id"], json={"reason": "x" * 141})
        assert_problem(response, 422, "invalid-request")
        assert_problem(
            await _cancel(client, transfer["id"], json={"refund": True}), 422, "invalid-request"
        )
        assert await signals(temporal, transfer["id"], CancelRequest) == []


class TestReviewTransfer:
    async def test_valid(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        decision = {"decision": "approve", "reviewer_id": "ops.alice", "note": "Known payee"}

        response = await _review(client, transfer["id"], decision)

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "in_review"
        assert await signals(temporal, transfer["id"], ReviewDecision) == [
            (SIGNAL_REVIEW_DECISION, ReviewDecision.model_validate(decision))
        ]

    async def test_reject(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        decision = {"decision": "reject", "reviewer_id": "ops.bob"}
        assert (await _review(client, transfer["id"], decision)).status_code == 202
        ((name, payload),) = await signals(temporal, transfer["id"], ReviewDecision)
        assert name == SIGNAL_REVIEW_DECISION
        assert payload.decision == "reject"

    @pytest.mark.parametrize("status", ["pending", "completed", "declined"])
    async def test_not_in_review(
        self, client: httpx.AsyncClient, temporal: Client, status: str
    ) -> None:
        transfer = await create(client)
        if status != "pending":
            await report(
                client, transfer["id"], step="notify", outcome="succeeded", status=status, version=9
            )
        decision = {"decision": "approve", "reviewer_id": "ops.alice"}
        assert_problem(
            await _review(client, transfer["id"], decision), 409, "transfer-not-in-review"
        )
        assert await signals(temporal, transfer["id"], ReviewDecision) == []

    async def test_workflow_already_closed(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        await workflow_handle(temporal, transfer["id"]).terminate(reason="test")
        decision = {"decision": "approve", "reviewer_id": "ops.alice"}
        assert_problem(
            await _review(client, transfer["id"], decision), 409, "transfer-not-in-review"
        )

    async def test_unknown_transfer(self, client: httpx.AsyncClient) -> None:
        decision = {"decision": "approve", "reviewer_id": "ops.alice"}
        assert_problem(
            await _review(client, str(uuid.uuid4()), decision), 404, "transfer-not-found"
        )

    @pytest.mark.parametrize(
        "decision",
        [
            pytest.param({"decision": "maybe", "reviewer_id": "ops.alice"}, id="unknown-decision"),
            pytest.param({"decision": "approve"}, id="no-reviewer"),
            pytest.param({"decision": "approve", "reviewer_id": "a b"}, id="malformed-reviewer"),
            pytest.param(
                {"decision": "approve", "reviewer_id": "ops.alice", "score": 0}, id="unknown-field"
            ),
        ],
    )
    async def test_malformed(
        self, client: httpx.AsyncClient, temporal: Client, decision: dict[str, Any]
    ) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        assert_problem(await _review(client, transfer["id"], decision), 422, "invalid-request")
        assert await signals(temporal, transfer["id"], ReviewDecision) == []
