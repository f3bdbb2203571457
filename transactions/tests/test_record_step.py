"""POST /v1/internal/transfers/{id}/steps (and /steps/batch): the saga's reports build the
projection."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from contracts.audit import AUDIT_EVENTS_PATH
from kit.testing import assert_problem
from transactions.tests.support import (
    count_rows,
    create,
    fingerprint,
    operator,
    report,
    report_batch,
)

FRAUD = {
    "score": 420,
    "decision": "review",
    "reasons": [{"code": "new_payee", "text": "First transfer to this account", "points": 300}],
}


class TestRecordStep:
    async def test_valid_saga_applied_in_order(self, client: httpx.AsyncClient) -> None:
        transfer = await create(client)
        hold_id, posting_id = str(uuid.uuid4()), str(uuid.uuid4())
        reports: list[dict[str, Any]] = [
            {"step": "validate", "outcome": "succeeded", "status": "pending"},
            {"step": "hold", "outcome": "succeeded", "status": "pending", "hold_id": hold_id},
            {"step": "score", "outcome": "review", "status": "in_review", "fraud": FRAUD},
            {"step": "review", "outcome": "approved", "status": "pending", "detail": "ok"},
            {
                "step": "post",
                "outcome": "succeeded",
                "status": "completed",
                "posting_id": posting_id,
            },
            {"step": "notify", "outcome": "succeeded", "status": "completed"},
        ]
        for version, fields in enumerate(reports, start=1):
            response = await report(client, transfer["id"], version=version, **fields)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == fields["status"]

        final = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert final["status"] == "completed"
        assert final["hold_id"] == hold_id
        assert final["posting_id"] == posting_id
        assert final["fraud"] == FRAUD
        assert final["failure_reason"] is None
        assert [(s["name"], s["outcome"]) for s in final["steps"]] == [
            (r["step"], r["outcome"]) for r in reports
        ]
        assert final["steps"][3]["detail"] == "ok"
        assert final["updated_at"] >= final["created_at"]

    async def test_failure_reason_is_kept(self, client: httpx.AsyncClient) -> None:
        transfer = await create(client)
        response = await report(
            client,
            transfer["id"],
            step="hold",
            outcome="failed",
            status="rejected",
            version=2,
            failure_reason="insufficient-funds",
        )
        assert response.json()["status"] == "rejected"
        assert response.json()["failure_reason"] == "insufficient-funds"
        # A later report that carries no reason does not erase it.
        later = await report(
            client, transfer["id"], step="notify", outcome="succeeded", status="rejected", version=3
        )
        assert later.json()["failure_reason"] == "insufficient-funds"

    async def test_replayed_step_changes_nothing(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        transfer = await create(client)
        fields = {"step": "score", "outcome": "review", "status": "in_review", "version": 3}
        first = await report(client, transfer["id"], fraud=FRAUD, **fields)
        again = await report(client, transfer["id"], fraud=FRAUD, **fields)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert await count_rows(app, "transfer_steps") == 1

    async def test_same_step_reported_differently_keeps_the_first(
        self, client: httpx.AsyncClient
    ) -> None:
        transfer = await create(client)
        first = await report(
            client,
            transfer["id"],
            step="validate",
            outcome="succeeded",
            status="pending",
            version=1,
        )
        second = await report(
            client, transfer["id"], step="validate", outcome="failed", status="rejected", version=1
        )
        assert second.json() == first.json()
        assert second.json()["steps"][0]["outcome"] == "succeeded"

    async def test_older_version_does_not_move_status_back(self, client: httpx.AsyncClient) -> None:
        transfer = await create(client)
        hold_id = str(uuid.uuid4())
        newer = await report(
            client, transfer["id"], step="score", outcome="review", status="in_review", version=3
        )
        late = await report(
            client,
            transfer["id"],
            step="hold",
            outcome="succeeded",
            status="pending",
            version=2,
            hold_id=hold_id,
        )
        assert late.status_code == 200
        body = late.json()
        assert body["status"] == "in_review"
        assert body["hold_id"] is None
        assert body["updated_at"] == newer.json()["updated_at"]
        # The audit trail still gets the late step, in the saga's order.
        assert [step["name"] for step in body["steps"]] == ["hold", "score"]

    async def test_terminal_status_stays(self, client: httpx.AsyncClient) -> None:
        transfer = await create(client)
        await report(
            client,
            transfer["id"],
            step="cancel",
            outcome="succeeded",
            status="cancelled",
            version=4,
        )
        late = await report(
            client, transfer["id"], step="score", outcome="approve", status="pending", version=3
        )
        assert late.json()["status"] == "cancelled"

    async def test_unknown_transfer(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        response = await report(
            client,
            str(uuid.uuid4()),
            step="validate",
            outcome="succeeded",
            status="pending",
            version=1,
        )
        assert_problem(response, 404, "transfer-not-found")
        assert await count_rows(app, "transfer_steps") == 0

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"version": 0}, id="version-zero"),
            pytest.param({"version": 1001}, id="version-too-large"),
            pytest.param({"status": "teleported"}, id="unknown-status"),
            pytest.param({"step": ""}, id="empty-step"),
            pytest.param({"step": "s" * 41}, id="step-too-long"),
            pytest.param({"occurred_at": "sometime"}, id="malformed-time"),
            pytest.param({"priority": "high"}, id="unknown-field"),
            pytest.param({"fraud": {"score": 1}}, id="malformed-fraud"),
        ],
    )
    async def test_malformed(
        self, client: httpx.AsyncClient, app: FastAPI, overrides: dict[str, Any]
    ) -> None:
        transfer = await create(client)
        fields: dict[str, Any] = {
            "step": "validate",
            "outcome": "succeeded",
            "status": "pending",
            "version": 1,
            **overrides,
        }
        assert_problem(await report(client, transfer["id"], **fields), 422, "invalid-request")
        assert await count_rows(app, "transfer_steps") == 0
        unchanged = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert unchanged == transfer


# A completed saga's reports, as the workflow batches them: up to the pivot, then the rest.
SAGA_REPORTS: list[dict[str, Any]] = [
    {"step": "validate", "outcome": "succeeded", "status": "pending", "version": 1},
    {
        "step": "hold",
        "outcome": "succeeded",
        "status": "pending",
        "version": 2,
        "hold_id": "0b0e6f4c-3d0c-4a43-9d53-0b8a2c7e1f10",
    },
    {"step": "score", "outcome": "approve", "status": "pending", "version": 3, "fraud": FRAUD},
    {
        "step": "post",
        "outcome": "succeeded",
        "status": "completed",
        "version": 4,
        "posting_id": "6f1d2b8a-7c4e-4f0a-8e2d-3b9c5a1d7e20",
    },
    {"step": "notify", "outcome": "succeeded", "status": "completed", "version": 5},
]
# What may differ between two transfers that took the same steps.
_OWN_FIELDS = frozenset(
    {"id", "workflow_id", "created_at", "updated_at", "source_account_id", "target_account_id"}
)
# What an audit event says of a step, as opposed to where it sits in the chain.
_EVENT_CONTENT = ("action", "actor_id", "actor_type", "occurred_at", "before", "after", "outcome")


async def _step_events(client: httpx.AsyncClient, transfer_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        AUDIT_EVENTS_PATH, params={"transfer_id": transfer_id}, headers=operator()
    )
    assert response.status_code == 200, response.text
    events = [
        {key: event[key] for key in _EVENT_CONTENT}
        for event in response.json()["items"]
        if event["action"].startswith("transfer.step.")
    ]
    return events


def _own_fields_removed(transfer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in transfer.items() if key not in _OWN_FIELDS}


class TestRecordSteps:
    async def test_a_batch_records_exactly_what_single_reports_would(
        self, client: httpx.AsyncClient
    ) -> None:
        alone, batched = await create(client), await create(client)
        for fields in SAGA_REPORTS:
            response = await report(client, alone["id"], **fields)
            assert response.status_code == 200, response.text
        first = await report_batch(client, batched["id"], SAGA_REPORTS[:3])
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "pending"
        assert [step["name"] for step in first.json()["steps"]] == ["validate", "hold", "score"]
        last = await report_batch(client, batched["id"], SAGA_REPORTS[3:])
        assert last.status_code == 200, last.text

        expected = (await client.get(f"/v1/transfers/{alone['id']}")).json()
        assert _own_fields_removed(last.json()) == _own_fields_removed(expected)
        assert last.json()["status"] == "completed"
        # One audit event per step, each with the status and version it moved from.
        events = await _step_events(client, batched["id"])
        assert events == await _step_events(client, alone["id"])
        assert [event["before"] for event in events] == [
            {"status": "pending", "version": 0},
            {"status": "pending", "version": 1},
            {"status": "pending", "version": 2},
            {"status": "pending", "version": 3},
            {"status": "completed", "version": 4},
        ]

    async def test_a_retried_batch_changes_nothing(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        transfer = await create(client)
        first = await report_batch(client, transfer["id"], SAGA_REPORTS)
        before = await fingerprint(app)
        again = await report_batch(client, transfer["id"], SAGA_REPORTS)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert await fingerprint(app) == before

    async def test_a_batch_overlapping_recorded_steps_adds_only_the_new_ones(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        # A report that reached the service but whose answer was lost, then the next batch
        # from a workflow task that ran again: the known steps are skipped, the rest applied.
        transfer = await create(client)
        await report(client, transfer["id"], **SAGA_REPORTS[0])
        response = await report_batch(client, transfer["id"], SAGA_REPORTS[:3])
        assert response.status_code == 200, response.text
        assert [step["name"] for step in response.json()["steps"]] == [
            "validate",
            "hold",
            "score",
        ]
        assert await count_rows(app, "transfer_steps") == 3
        assert len(await _step_events(client, transfer["id"])) == 3

    async def test_a_step_named_twice_in_a_batch_is_recorded_once_as_first_reported(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        # The batch's steps go in one INSERT: the first of the two is the one kept.
        transfer = await create(client)
        records = [
            {"step": "review", "outcome": "approved", "status": "pending", "version": 1},
            {"step": "review", "outcome": "declined", "status": "declined", "version": 2},
        ]
        response = await report_batch(client, transfer["id"], records)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "declined"
        assert [(s["name"], s["outcome"]) for s in response.json()["steps"]] == [
            ("review", "approved")
        ]
        assert await count_rows(app, "transfer_steps") == 1
        assert len(await _step_events(client, transfer["id"])) == 1

    @pytest.mark.parametrize(
        "records",
        [
            pytest.param([], id="empty"),
            pytest.param([SAGA_REPORTS[1], SAGA_REPORTS[0]], id="versions-backwards"),
            pytest.param([SAGA_REPORTS[0], SAGA_REPORTS[0]], id="version-repeated"),
            pytest.param([SAGA_REPORTS[0], {**SAGA_REPORTS[1], "step": "Hold!"}], id="bad-step"),
            pytest.param(
                [{**SAGA_REPORTS[0], "version": version} for version in range(1, 22)],
                id="too-many",
            ),
            pytest.param([{**SAGA_REPORTS[0], "priority": "high"}], id="unknown-field"),
        ],
    )
    async def test_a_malformed_batch_changes_nothing(
        self, client: httpx.AsyncClient, app: FastAPI, records: list[dict[str, Any]]
    ) -> None:
        transfer = await create(client)
        before = await fingerprint(app)
        assert_problem(await report_batch(client, transfer["id"], records), 422, "invalid-request")
        assert await fingerprint(app) == before

    async def test_unknown_transfer(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        response = await report_batch(client, str(uuid.uuid4()), SAGA_REPORTS[:2])
        assert_problem(response, 404, "transfer-not-found")
        assert await count_rows(app, "transfer_steps") == 0
