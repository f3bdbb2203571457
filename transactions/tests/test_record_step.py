"""POST /v1/internal/transfers/{id}/steps: the saga's reports build the projection."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kit.testing import assert_problem
from transactions.tests.support import count_rows, create, report

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
