"""The transfer audit trail (issue 8): every audited change writes its event in the same
transaction as the change, saga steps exactly once (deterministic ids), compensations
linked to the step they undo; a refused or failed change writes nothing."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook
from temporalio.client import Client
from temporalio.worker import Worker

from contracts.audit import AUDIT_EVENTS_PATH, AUDIT_EXPORT_PATH, AUDIT_VERIFY_PATH
from contracts.transfers import CALLBACK_CLIENTS_PATH, CALLBACK_CONFIRMATIONS_PATH, workflow_id
from kit.testing import assert_problem
from transactions import repository
from transactions.audit import TRANSFER_AUDIT_NAMESPACE, step_event_id
from transactions.tests.standin import StandInTransferWorkflow
from transactions.tests.support import (
    ALICE,
    OPERATOR,
    WORKER,
    FakeAccounts,
    count_rows,
    create,
    fingerprint,
    key_header,
    operator,
    report,
    transfer_body,
    workflow_handle,
)

FRAUD = {"score": 120, "decision": "approve", "reasons": []}


async def _events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(AUDIT_EVENTS_PATH, params=params, headers=operator())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _actions(client: httpx.AsyncClient, transfer_id: str) -> list[str]:
    return [event["action"] for event in await _events(client, transfer_id=transfer_id)]


async def _in_review(client: httpx.AsyncClient) -> dict[str, Any]:
    transfer = await create(client)
    response = await report(
        client, transfer["id"], step="score", outcome="review", status="in_review", version=3
    )
    assert response.status_code == 200, response.text
    return transfer


class TestTransferTimeline:
    async def test_completed_transfer(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        created = await client.post(
            "/v1/transfers", json=body, headers={**key_header(), "X-Request-ID": "req-create"}
        )
        transfer_id = created.json()["id"]
        hold_id, posting_id, run_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        saga = {"workflow_id": workflow_id(uuid.UUID(transfer_id)), "run_id": run_id}
        reports: list[dict[str, Any]] = [
            {"step": "validate", "outcome": "succeeded", "status": "pending"},
            {"step": "hold", "outcome": "succeeded", "status": "pending", "hold_id": hold_id},
            {"step": "score", "outcome": "approve", "status": "pending", "fraud": FRAUD},
            {
                "step": "post",
                "outcome": "succeeded",
                "status": "completed",
                "posting_id": posting_id,
            },
            {"step": "notify", "outcome": "succeeded", "status": "completed"},
        ]
        for version, fields in enumerate(reports, start=1):
            response = await report(client, transfer_id, version=version, **saga, **fields)
            assert response.status_code == 200, response.text

        events = await _events(client, transfer_id=transfer_id)

        assert [event["action"] for event in events] == [
            "transfer.requested",
            "transfer.step.validate",
            "transfer.step.hold",
            "transfer.step.score",
            "transfer.step.post",
            "transfer.step.notify",
        ]
        requested, *steps = events
        accounts = [body["source_account_id"], body["target_account_id"]]
        assert requested["actor_id"] == ALICE
        assert requested["actor_type"] == "customer"
        assert requested["request_id"] == "req-create"
        assert requested["account_ids"] == accounts
        assert requested["subject_type"] == "transfer"
        assert requested["subject_id"] == transfer_id
        assert requested["workflow_id"] == saga["workflow_id"]
        assert requested["outcome"] == "accepted"
        assert requested["after"]["amount_minor"] == body["amount_minor"]
        assert requested["after"]["currency"] == "EUR"
        for event, fields in zip(steps, reports, strict=True):
            assert event["id"] == str(step_event_id(uuid.UUID(transfer_id), fields["step"]))
            assert event["actor_id"] == WORKER
            assert event["actor_type"] == "service"
            assert event["transfer_id"] == transfer_id
            assert event["account_ids"] == accounts
            assert event["workflow_id"] == saga["workflow_id"]
            assert event["run_id"] == run_id
            assert event["outcome"] == fields["outcome"]
            assert event["after"]["status"] == fields["status"]
            assert event["occurred_at"] == "2026-11-28T10:00:00Z"
            assert event["compensates"] is None
        hold, score, post = steps[1], steps[2], steps[3]
        assert hold["after"]["hold_id"] == hold_id
        assert score["after"]["fraud_decision"] == "approve"
        assert score["after"]["fraud_score"] == 120
        assert post["before"] == {"status": "pending", "version": 3}
        assert post["after"]["posting_id"] == posting_id
        assert await _events(client, account_id=body["source_account_id"]) == events

    async def test_verify_and_export(self, client: httpx.AsyncClient) -> None:
        transfer = await _in_review(client)
        verified = await client.get(AUDIT_VERIFY_PATH, headers=operator())
        assert verified.status_code == 200, verified.text
        assert verified.json()["ok"] is True
        assert verified.json()["events_checked"] == 2
        assert verified.json()["service"] == "transactions"
        exported = await client.get(AUDIT_EXPORT_PATH, headers=operator())
        assert exported.status_code == 200, exported.text
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert [line["action"] for line in lines] == ["transfer.requested", "transfer.step.score"]
        assert {line["transfer_id"] for line in lines} == {transfer["id"]}

    def test_namespace_is_fixed(self) -> None:
        # Changing it would give every retried step report a new id: a duplicate event.
        assert uuid.UUID("5b0c6f1e-93a4-4d2b-8e71-0c4a9f6d2e38") == TRANSFER_AUDIT_NAMESPACE
        transfer_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
        assert step_event_id(transfer_id, "hold") == uuid.uuid5(
            TRANSFER_AUDIT_NAMESPACE, f"{transfer_id}:step:hold"
        )


class TestStepEvents:
    async def test_retried_report_writes_one_event(self, client: httpx.AsyncClient) -> None:
        transfer = await create(client)
        fields = {"step": "hold", "status": "pending", "version": 2}
        for outcome in ("succeeded", "succeeded", "failed"):
            response = await report(client, transfer["id"], outcome=outcome, **fields)
            assert response.status_code == 200, response.text

        holds = await _events(client, transfer_id=transfer["id"], action="transfer.step.hold")

        assert len(holds) == 1
        assert holds[0]["outcome"] == "succeeded"

    @pytest.mark.parametrize("named", [True, False], ids=["named", "implied"])
    async def test_void_compensates_the_hold(self, client: httpx.AsyncClient, named: bool) -> None:
        transfer = await create(client)
        hold_id = str(uuid.uuid4())
        await report(
            client,
            transfer["id"],
            step="hold",
            outcome="succeeded",
            status="pending",
            version=2,
            hold_id=hold_id,
        )
        await report(
            client,
            transfer["id"],
            step="score",
            outcome="decline",
            status="declined",
            version=3,
            hold_id=hold_id,
        )
        void = await report(
            client,
            transfer["id"],
            step="void",
            outcome="succeeded",
            status="declined",
            version=4,
            hold_id=hold_id,
            **({"compensates_step": "hold"} if named else {}),
        )
        assert void.status_code == 200, void.text

        (hold,) = await _events(client, transfer_id=transfer["id"], action="transfer.step.hold")
        (voided,) = await _events(client, transfer_id=transfer["id"], action="transfer.step.void")

        assert voided["compensates"] == hold["id"]
        assert voided["after"]["compensates_step"] == "hold"
        # The ledger transfer it voids.
        assert voided["after"]["hold_id"] == hold_id
        assert hold["compensates"] is None

    async def test_step_and_event_commit_together(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        transfer = await create(client)

        async def broken(*_args: object, **_kwargs: object) -> bool:
            raise RuntimeError("the audit write failed")

        with monkeypatch.context() as patched:
            patched.setattr(repository, "append_audit_events", broken)
            failed = await report(
                client,
                transfer["id"],
                step="validate",
                outcome="succeeded",
                status="pending",
                version=1,
            )
        assert_problem(failed, 500, "internal-error")
        # Neither the step nor the projection moved without their event.
        unchanged = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert unchanged == transfer
        assert await count_rows(app, "transfer_steps") == 0

        retried = await report(
            client,
            transfer["id"],
            step="validate",
            outcome="succeeded",
            status="pending",
            version=1,
        )
        assert retried.status_code == 200, retried.text
        assert await _actions(client, transfer["id"]) == [
            "transfer.requested",
            "transfer.step.validate",
        ]

    @pytest.mark.parametrize(
        ("overrides", "status"),
        [
            pytest.param({"step": "Hold Now"}, 422, id="step-not-an-action"),
            pytest.param({"occurred_at": "2026-11-28T10:00:00"}, 422, id="time-without-zone"),
            pytest.param({"compensates_step": "the hold"}, 422, id="compensates-not-a-step"),
            pytest.param({"version": 0}, 422, id="malformed"),
        ],
    )
    async def test_refused_report_writes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, overrides: dict[str, Any], status: int
    ) -> None:
        transfer = await create(client)
        before = await fingerprint(app)
        fields: dict[str, Any] = {
            "step": "hold",
            "outcome": "succeeded",
            "status": "pending",
            "version": 2,
            **overrides,
        }
        assert_problem(await report(client, transfer["id"], **fields), status, "invalid-request")
        assert await fingerprint(app) == before

    async def test_unknown_transfer_writes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        response = await report(
            client,
            str(uuid.uuid4()),
            step="hold",
            outcome="succeeded",
            status="pending",
            version=2,
        )
        assert_problem(response, 404, "transfer-not-found")
        assert await count_rows(app, "audit_events") == 0


class TestCreateEvents:
    async def test_failed_create_writes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        accounts.failure = "down"
        response = await client.post("/v1/transfers", json=transfer_body(), headers=key_header())
        assert_problem(response, 503, "accounts-unavailable")
        assert await count_rows(app, "audit_events") == 0

    async def test_replayed_create_writes_nothing_new(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        body, headers = transfer_body(), key_header()
        for _ in range(3):
            response = await client.post("/v1/transfers", json=body, headers=headers)
            assert response.status_code == 202, response.text
        assert await count_rows(app, "audit_events") == 1


class TestReviewAndCancelEvents:
    async def test_review_decided(self, client: httpx.AsyncClient) -> None:
        transfer = await _in_review(client)
        decision = {"decision": "reject", "note": "Unknown payee"}
        response = await client.post(
            f"/v1/admin/transfers/{transfer['id']}/review",
            json=decision,
            headers={**operator(), "X-Request-ID": "req-review"},
        )
        assert response.status_code == 202, response.text

        (event,) = await _events(
            client, transfer_id=transfer["id"], action="transfer.review_decided"
        )
        # The token names the actor, and the reviewer: the body cannot name anyone.
        assert event["actor_id"] == OPERATOR
        assert event["actor_type"] == "operator"
        assert event["request_id"] == "req-review"
        assert event["before"] == {"status": "in_review"}
        assert event["after"] == {**decision, "reviewer_id": OPERATOR}
        assert event["outcome"] == "accepted"
        assert await _events(client, actor_id=OPERATOR) == [event]

    async def test_refused_review_writes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        transfer = await _in_review(client)
        await workflow_handle(temporal, transfer["id"]).terminate(reason="test")
        before = await fingerprint(app)
        response = await client.post(
            f"/v1/admin/transfers/{transfer['id']}/review",
            json={"decision": "approve"},
            headers=operator(),
        )
        assert_problem(response, 409, "transfer-not-in-review")
        assert await fingerprint(app) == before

    async def test_cancel_accepted_once(
        self, client: httpx.AsyncClient, temporal: Client, task_queue: str
    ) -> None:
        transfer = await create(client)
        async with Worker(temporal, task_queue=task_queue, workflows=[StandInTransferWorkflow]):
            for _ in range(2):
                response = await client.post(
                    f"/v1/transfers/{transfer['id']}/cancel", json={"reason": "Wrong payee"}
                )
                assert response.status_code == 202, response.text

        (event,) = await _events(
            client, transfer_id=transfer["id"], action="transfer.cancel_requested"
        )
        assert event["actor_id"] == ALICE
        assert event["actor_type"] == "customer"
        assert event["outcome"] == "accepted"
        assert event["after"] == {"reason": "Wrong payee"}
        assert event["before"] == {"status": "pending"}

    async def test_cancel_refused(self, client: httpx.AsyncClient) -> None:
        transfer = await create(client)
        await report(
            client,
            transfer["id"],
            step="notify",
            outcome="succeeded",
            status="completed",
            version=9,
        )
        response = await client.post(f"/v1/transfers/{transfer['id']}/cancel")
        assert_problem(response, 409, "transfer-not-cancellable")

        (event,) = await _events(
            client, transfer_id=transfer["id"], action="transfer.cancel_requested"
        )
        assert event["outcome"] == "refused"
        assert event["actor_id"] == ALICE
        assert event["before"] == {"status": "completed"}
        assert event["after"] == {"refusal": "the transfer is already completed"}


class TestCallbackEvents:
    async def test_registered_and_received(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        transfer = await _in_review(client)
        source = transfer["source_account_id"]
        registered = await client.post(
            CALLBACK_CLIENTS_PATH,
            json={"name": "rail-x", "account_ids": [source]},
            headers=operator(),
        )
        assert registered.status_code == 201, registered.text
        callback_client = registered.json()
        body = json.dumps(
            {"transfer_id": transfer["id"], "decision": "approve", "external_reference": "RX-1"}
        )
        message_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        headers = {
            "Callback-Client-Id": callback_client["id"],
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(callback_client["secret"]).sign(message_id, now, body),
            "content-type": "application/json",
        }
        for _ in range(2):  # the second delivery is a replay: no second event
            response = await client.post(CALLBACK_CONFIRMATIONS_PATH, content=body, headers=headers)
            assert response.status_code == 200, response.text

        (registration,) = await _events(client, action="callback_client.registered")
        assert registration["actor_id"] == OPERATOR
        assert registration["subject_type"] == "callback_client"
        assert registration["subject_id"] == callback_client["id"]
        assert registration["after"] == {"name": "rail-x", "account_ids": [source]}
        # The signing secret is shown once, to its owner, and never kept in the trail.
        secret = callback_client["secret"]
        exported = await client.get(AUDIT_EXPORT_PATH, headers=operator())
        assert secret not in exported.text
        assert secret.removeprefix("whsec_") not in exported.text

        (received,) = await _events(client, action="callback.received")
        assert received["actor_id"] == "callback:rail-x"
        assert received["actor_type"] == "service"
        assert received["transfer_id"] == transfer["id"]
        assert received["outcome"] == "accepted"
        assert received["after"]["decision"] == "approve"
        assert received["after"]["webhook_id"] == message_id

    async def test_refused_callback_writes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        transfer = await _in_review(client)
        registration = {"name": "rail-y", "account_ids": [transfer["source_account_id"]]}
        registered = (
            await client.post(CALLBACK_CLIENTS_PATH, json=registration, headers=operator())
        ).json()
        before = await fingerprint(app)
        body = json.dumps(
            {"transfer_id": transfer["id"], "decision": "approve", "external_reference": "RX-2"}
        )
        now = datetime.now(UTC)
        headers = {
            "Callback-Client-Id": registered["id"],
            "webhook-id": "msg_forged",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": "v1,Zm9yZ2VkLXNpZ25hdHVyZS1mb3JnZWQtc2lnbmF0dXJlLWZvcmdlZA==",
        }
        response = await client.post(CALLBACK_CONFIRMATIONS_PATH, content=body, headers=headers)
        assert_problem(response, 401, "callback-signature-invalid")
        assert await fingerprint(app) == before
