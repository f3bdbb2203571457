"""POST /v1/transfers/{id}/cancel (update `request_cancel`) and POST
/v1/admin/transfers/{id}/review (signal `review_decision`).

The cancel tests run a Worker for a tiny stand-in of the saga, registered as
"TransferWorkflow" on the test's own task queue, that answers the update like the real
one: its validator refuses once posting has begun.
"""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from contracts.audit import ActorType
from contracts.transfers import (
    SIGNAL_REVIEW_DECISION,
    CancelRequest,
    ReviewDecision,
)
from kit.audit import Actor
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.service import reviewer_id
from transactions.tests.standin import (
    BEGIN_POSTING,
    CANCELLED_QUERY,
    REFUSE_QUIETLY,
)
from transactions.tests.support import (
    OPERATOR,
    accepted_cancels,
    build_app,
    client_of,
    create,
    fingerprint,
    operator,
    report,
    signals,
    tell,
    workflow_handle,
)


async def _cancel(client: httpx.AsyncClient, transfer_id: str, **kwargs: Any) -> httpx.Response:
    return await client.post(f"/v1/transfers/{transfer_id}/cancel", **kwargs)


async def _review(
    client: httpx.AsyncClient, transfer_id: str, decision: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/v1/admin/transfers/{transfer_id}/review", json=decision, headers=operator()
    )


async def _put_in_review(client: httpx.AsyncClient, transfer_id: str) -> None:
    response = await report(
        client, transfer_id, step="score", outcome="review", status="in_review", version=3
    )
    assert response.status_code == 200, response.text


class TestCancelTransfer:
    async def test_valid(self, client: httpx.AsyncClient, temporal: Client, worker: Worker) -> None:
        transfer = await create(client)
        response = await _cancel(client, transfer["id"], json={"reason": "Wrong payee"})
        assert response.status_code == 202, response.text
        assert response.json()["id"] == transfer["id"]
        assert await accepted_cancels(temporal, transfer["id"]) == [
            CancelRequest(reason="Wrong payee")
        ]
        assert await workflow_handle(temporal, transfer["id"]).query(CANCELLED_QUERY) is True

    async def test_without_body(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        assert (await _cancel(client, transfer["id"])).status_code == 202
        assert await accepted_cancels(temporal, transfer["id"]) == [CancelRequest()]

    async def test_repeated_cancel_is_one_update(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        first = await _cancel(client, transfer["id"], json={"reason": "Wrong payee"})
        again = await _cancel(client, transfer["id"], json={"reason": "Really"})
        assert first.status_code == again.status_code == 202
        assert await accepted_cancels(temporal, transfer["id"]) == [
            CancelRequest(reason="Wrong payee")
        ]

    async def test_does_not_use_the_signal(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        assert (await _cancel(client, transfer["id"])).status_code == 202
        assert await signals(temporal, transfer["id"], CancelRequest) == []

    async def test_while_in_review(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        assert (await _cancel(client, transfer["id"])).status_code == 202
        assert len(await accepted_cancels(temporal, transfer["id"])) == 1

    async def test_refused_by_the_saga_once_posting_began(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        # The saga knows before the projection does: its validator has the last word.
        transfer = await create(client)
        await tell(temporal, transfer["id"], BEGIN_POSTING)
        problem = assert_problem(
            await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable"
        )
        assert "posting has begun" in str(problem["detail"])
        assert await accepted_cancels(temporal, transfer["id"]) == []
        assert await workflow_handle(temporal, transfer["id"]).query(CANCELLED_QUERY) is False

    async def test_not_accepted_by_the_saga(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        await tell(temporal, transfer["id"], REFUSE_QUIETLY)
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")
        assert await workflow_handle(temporal, transfer["id"]).query(CANCELLED_QUERY) is False

    @pytest.mark.parametrize(
        "status", ["completed", "rejected", "declined", "expired", "cancelled"]
    )
    async def test_terminal_transfer(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker, status: str
    ) -> None:
        transfer = await create(client)
        await report(
            client, transfer["id"], step="notify", outcome="succeeded", status=status, version=9
        )
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")
        assert await accepted_cancels(temporal, transfer["id"]) == []

    async def test_posting_has_begun(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        await report(
            client, transfer["id"], step="post", outcome="succeeded", status="pending", version=4
        )
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")
        assert await accepted_cancels(temporal, transfer["id"]) == []

    async def test_workflow_already_closed(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        transfer = await create(client)
        await workflow_handle(temporal, transfer["id"]).terminate(reason="test")
        assert_problem(await _cancel(client, transfer["id"]), 409, "transfer-not-cancellable")

    async def test_no_answer_in_time(self, settings: Settings, temporal: Client) -> None:
        # No worker polls this task queue: the update is never answered.
        impatient = settings.model_copy(update={"cancel_timeout_seconds": 0.5})
        async with client_of(build_app(impatient, temporal_client=temporal)) as client:
            transfer = await create(client)
            response = await _cancel(client, transfer["id"])
        problem = assert_problem(response, 503, "workflow-service-unavailable")
        assert int(response.headers["retry-after"]) > 0
        assert problem["retry_after_seconds"]
        description = await workflow_handle(temporal, transfer["id"]).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING

    async def test_unknown_transfer(self, client: httpx.AsyncClient) -> None:
        assert_problem(await _cancel(client, str(uuid.uuid4())), 404, "transfer-not-found")

    async def test_malformed_body(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        transfer = await create(client)
        response = await _cancel(client, transfer["id"], json={"reason": "x" * 141})
        assert_problem(response, 422, "invalid-request")
        assert_problem(
            await _cancel(client, transfer["id"], json={"refund": True}), 422, "invalid-request"
        )
        assert await accepted_cancels(temporal, transfer["id"]) == []


class TestReviewTransfer:
    async def test_valid(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        decision = {"decision": "approve", "note": "Known payee"}

        response = await _review(client, transfer["id"], decision)

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "in_review"
        # The reviewer the saga hears of is the token's subject.
        assert await signals(temporal, transfer["id"], ReviewDecision) == [
            (
                SIGNAL_REVIEW_DECISION,
                ReviewDecision(decision="approve", reviewer_id=OPERATOR, note="Known payee"),
            )
        ]

    async def test_reject(self, client: httpx.AsyncClient, temporal: Client) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        decision = {"decision": "reject"}
        assert (await _review(client, transfer["id"], decision)).status_code == 202
        ((name, payload),) = await signals(temporal, transfer["id"], ReviewDecision)
        assert name == SIGNAL_REVIEW_DECISION
        assert payload.decision == "reject"
        assert payload.reviewer_id == OPERATOR

    @pytest.mark.parametrize("named", ["ops.alice", OPERATOR])
    async def test_body_cannot_name_the_reviewer(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client, named: str
    ) -> None:
        # Refused rather than ignored: a console that still names the person at it must
        # learn that the record would name the token's subject instead of them.
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        before = await fingerprint(app)
        response = await _review(
            client, transfer["id"], {"decision": "approve", "reviewer_id": named}
        )
        assert_problem(response, 422, "invalid-request")
        errors = response.json()["errors"]
        assert [error["location"] for error in errors] == [["body", "reviewer_id"]]
        assert await signals(temporal, transfer["id"], ReviewDecision) == []
        assert await fingerprint(app) == before

    @pytest.mark.parametrize("status", ["pending", "completed", "declined"])
    async def test_not_in_review(
        self, client: httpx.AsyncClient, temporal: Client, status: str
    ) -> None:
        transfer = await create(client)
        if status != "pending":
            await report(
                client, transfer["id"], step="notify", outcome="succeeded", status=status, version=9
            )
        decision = {"decision": "approve"}
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
        decision = {"decision": "approve"}
        assert_problem(
            await _review(client, transfer["id"], decision), 409, "transfer-not-in-review"
        )

    async def test_unknown_transfer(self, client: httpx.AsyncClient) -> None:
        decision = {"decision": "approve"}
        assert_problem(
            await _review(client, str(uuid.uuid4()), decision), 404, "transfer-not-found"
        )

    @pytest.mark.parametrize(
        "decision",
        [
            pytest.param({"decision": "maybe"}, id="unknown-decision"),
            pytest.param({}, id="no-decision"),
            pytest.param({"decision": "approve", "note": "x" * 141}, id="note-too-long"),
            pytest.param({"decision": "approve", "score": 0}, id="unknown-field"),
        ],
    )
    async def test_malformed(
        self, client: httpx.AsyncClient, temporal: Client, decision: dict[str, Any]
    ) -> None:
        transfer = await create(client)
        await _put_in_review(client, transfer["id"])
        assert_problem(await _review(client, transfer["id"], decision), 422, "invalid-request")
        assert await signals(temporal, transfer["id"], ReviewDecision) == []


class TestReviewerId:
    def test_the_token_subject(self) -> None:
        assert reviewer_id(Actor("ops.alice", ActorType.operator)) == "ops.alice"

    def test_a_subject_a_reviewer_id_cannot_carry_is_named_by_its_hash(self) -> None:
        named = reviewer_id(Actor("ops alice|1", ActorType.operator))
        assert named.startswith("sha256:")
        assert ReviewDecision(decision="approve", reviewer_id=named).reviewer_id == named
        assert named != reviewer_id(Actor("ops alice|2", ActorType.operator))
