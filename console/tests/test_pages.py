"""The pages show what the services' APIs answer, offer only what the member's scopes
allow, and forward a decision only with the session's CSRF token."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI

from console.testing import session_for_tests, session_headers
from console.tests.support import FakeUpstream, problem
from contracts.auth import STAFF_ROLE_SCOPES, StaffRole

TRANSFER_ID = uuid.UUID("1b4e28ba-2fa1-41d2-883f-0016d3cca427")
SOURCE = uuid.UUID("0f6a3c1e-2b7d-4e8f-9a01-23456789abcd")
TARGET = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
HOLD_ID = uuid.UUID("a3bb189e-8bf9-3888-9912-ace4e6543002")
AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).isoformat()
ADMIN = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.admin])
REVIEWER = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.reviewer])
AUDITOR = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.auditor])
REASON = {
    "code": "new_account_large_amount",
    "text": "Large amount from a new account",
    "points": 70,
}


def transfer_body(status: str = "in_review") -> dict[str, Any]:
    return {
        "id": str(TRANSFER_ID),
        "workflow_id": f"transfer-{TRANSFER_ID}",
        "status": status,
        "source_account_id": str(SOURCE),
        "target_account_id": str(TARGET),
        "amount_minor": 1_000_000,
        "currency": "EUR",
        "description": "Rent <script>",
        "metadata": {},
        "steps": [
            {"name": "validate", "outcome": "ok", "occurred_at": AT, "detail": None},
            {"name": "hold", "outcome": "ok", "occurred_at": AT, "detail": None},
            {"name": "score", "outcome": "review", "occurred_at": AT, "detail": None},
        ],
        "fraud": {"score": 70, "decision": "review", "reasons": [REASON]},
        "hold_id": str(HOLD_ID),
        "posting_id": None,
        "failure_reason": None,
        "created_at": AT,
        "updated_at": AT,
    }


def audit_event(service: str, action: str, sequence: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": AT,
        "actor_id": "sagabank-worker",
        "actor_type": "service",
        "action": action,
        "subject_type": "transfer",
        "subject_id": str(TRANSFER_ID),
        "transfer_id": str(TRANSFER_ID),
        "outcome": "ok",
        "service": service,
        "sequence": sequence,
        "recorded_at": AT,
        "previous_hash": "0" * 64,
        "hash": "1" * 64,
    }


@pytest.fixture
def bank(upstreams: dict[str, FakeUpstream]) -> dict[str, FakeUpstream]:
    """The services answering about one transfer in review."""
    transactions, fraud, accounts = (
        upstreams["transactions"],
        upstreams["fraud"],
        upstreams["accounts"],
    )
    transactions.answer("GET", f"/v1/transfers/{TRANSFER_ID}", transfer_body())
    transactions.answer("GET", "/v1/transfers", {"items": [transfer_body()], "next_cursor": "c-2"})
    fraud.answer(
        "GET",
        f"/v1/scores/{TRANSFER_ID}",
        {
            "transfer_id": str(TRANSFER_ID),
            "score": 70,
            "decision": "review",
            "reasons": [REASON],
            "ruleset_version": "2026-02",
            "created_at": AT,
        },
    )
    accounts.answer(
        "GET",
        f"/v1/ledger/transfers/{HOLD_ID}",
        {
            "id": str(HOLD_ID),
            "kind": "pending",
            "debit_account_id": str(SOURCE),
            "credit_account_id": str(TARGET),
            "amount_minor": 1_000_000,
            "currency": "EUR",
            "pending_id": None,
            "timeout_seconds": 90000,
            "expires_at": AT,
            "reference": None,
            "created_at": AT,
        },
    )
    for sequence, service in enumerate(("accounts", "transactions", "fraud", "notifications")):
        upstreams[service].answer(
            "GET",
            "/v1/admin/audit-events",
            {"items": [audit_event(service, f"{service}.step", sequence + 1)], "next_cursor": None},
        )
    return upstreams


class TestTransfers:
    async def test_search_passes_the_filters_and_shows_the_page(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        session = session_for_tests(app, access_token="tok-admin", scopes=ADMIN)
        response = await client.get(
            "/transfers",
            params={
                "status": "in_review",
                "account_id": str(SOURCE),
                "created_from": "2026-03-01",
                "created_to": "2026-03-01",
                "cursor": "c-1",
            },
            headers=session_headers(session),
        )
        assert response.status_code == 200, response.text
        call = bank["transactions"].calls("GET", "/v1/transfers")[0]
        assert call.headers["authorization"] == "Bearer tok-admin"
        assert parse_qs(call.url.query.decode()) == {
            "status": ["in_review"],
            "account_id": [str(SOURCE)],
            "created_after": ["2026-03-01T00:00:00+00:00"],
            "created_before": ["2026-03-02T00:00:00+00:00"],
            "cursor": ["c-1"],
            "limit": ["25"],
        }
        assert f'href="/transfers/{TRANSFER_ID}"' in response.text
        assert "10,000.00 EUR" in response.text
        assert ">in review</span>" in response.text  # status in words
        assert "cursor=c-2" in response.text  # the next page keeps the filters
        assert "status=in_review" in response.text

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("status", "lost"),
            ("account_id", "nope"),
            ("created_from", "1 March"),
            ("customer_id", "a b"),
        ],
    )
    async def test_a_mistyped_filter_is_shown_and_nothing_is_asked(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        bank: dict[str, FakeUpstream],
        field: str,
        value: str,
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(
            "/transfers", params={field: value}, headers=session_headers(session)
        )
        assert response.status_code == 200
        assert 'class="problem" role="alert"' in response.text
        assert bank["transactions"].requests == []

    async def test_a_customer_with_one_account_finds_its_transfers(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        account = {
            "id": str(SOURCE),
            "customer_id": "cust-1",
            "kind": "customer",
            "currency": "EUR",
            "status": "active",
            "debits_must_not_exceed_credits": True,
            "credits_must_not_exceed_debits": False,
            "max_transfer_amount_minor": None,
            "daily_outflow_limit_minor": None,
            "balances": {
                "debits_pending_minor": 0,
                "debits_posted_minor": 0,
                "credits_pending_minor": 0,
                "credits_posted_minor": 0,
                "posted_minor": 0,
                "pending_minor": 0,
                "available_minor": 0,
            },
            "created_at": AT,
        }
        bank["accounts"].answer("GET", "/v1/accounts", {"items": [account], "next_cursor": None})
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(
            "/transfers", params={"customer_id": "cust-1"}, headers=session_headers(session)
        )
        assert response.status_code == 200, response.text
        lookup = bank["accounts"].calls("GET", "/v1/accounts")[0]
        assert parse_qs(lookup.url.query.decode())["customer_id"] == ["cust-1"]
        search = bank["transactions"].calls("GET", "/v1/transfers")[0]
        assert parse_qs(search.url.query.decode())["account_id"] == [str(SOURCE)]

    async def test_a_transfers_page_tells_its_whole_story(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(f"/transfers/{TRANSFER_ID}", headers=session_headers(session))
        assert response.status_code == 200, response.text
        page = response.text
        for step in ("validate", "hold", "score"):
            assert f"<strong>{step}</strong>" in page
        assert "Large amount from a new account" in page
        assert "ruleset 2026-02" in page  # the fraud service's own record
        assert str(HOLD_ID) in page  # the ledger's hold
        assert ">pending<" in page
        for service in ("accounts", "transactions", "fraud", "notifications"):
            assert f"{service}.step" in page  # every service's audit events
            call = bank[service].calls("GET", "/v1/admin/audit-events")[0]
            assert parse_qs(call.url.query.decode())["transfer_id"] == [str(TRANSFER_ID)]
        assert (
            f'href="http://127.0.0.1:8233/namespaces/default/workflows/transfer-{TRANSFER_ID}"'
            in page
        )
        assert "Rent &lt;script&gt;" in page  # escaped
        assert 'value="approve"' in page  # an admin reviews

    async def test_a_failing_service_costs_its_section_not_the_page(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        bank["fraud"].routes[("GET", "/v1/admin/audit-events")] = lambda _r: problem(
            503, "Service unavailable"
        )
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(f"/transfers/{TRANSFER_ID}", headers=session_headers(session))
        assert response.status_code == 200
        assert "fraud answered 503 Service unavailable" in response.text
        assert "accounts.step" in response.text

    async def test_an_unknown_transfer_answers_404(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(f"/transfers/{uuid.uuid4()}", headers=session_headers(session))
        assert response.status_code == 404
        assert "transactions answered 404" in response.text

    async def test_an_auditor_sees_no_decision_and_is_told_what_their_role_lacks(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=AUDITOR, role=StaffRole.auditor)
        response = await client.get(f"/transfers/{TRANSFER_ID}", headers=session_headers(session))
        assert response.status_code == 200
        assert 'value="approve"' not in response.text
        assert 'href="/reviews"' not in response.text
        assert "Your role does not hold accounts:admin." in response.text
        assert bank["fraud"].calls("GET", f"/v1/scores/{TRANSFER_ID}") == []
        assert "Large amount from a new account" in response.text  # from the transfer


class TestReviews:
    async def test_the_queue_shows_what_fraud_answers(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        item = {
            "transfer_id": str(TRANSFER_ID),
            "source_account_id": str(SOURCE),
            "target_account_id": str(TARGET),
            "amount_minor": 1_000_000,
            "currency": "EUR",
            "score": 70,
            "reasons": [REASON],
            "ruleset_version": "2026-02",
            "scored_at": AT,
        }
        bank["fraud"].answer("GET", "/v1/reviews", {"items": [item], "next_cursor": None})
        session = session_for_tests(app, access_token="t", scopes=REVIEWER, role=StaffRole.reviewer)
        response = await client.get("/reviews", headers=session_headers(session))
        assert response.status_code == 200
        assert f'href="/transfers/{TRANSFER_ID}"' in response.text
        assert "10,000.00 EUR" in response.text

    async def test_approve_forwards_the_decision_and_the_note(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        path = f"/v1/admin/transfers/{TRANSFER_ID}/review"
        bank["transactions"].answer("POST", path, transfer_body(), status=202)
        session = session_for_tests(app, access_token="t-rev", scopes=REVIEWER)
        response = await client.post(
            f"/reviews/{TRANSFER_ID}",
            data={"csrf_token": session.csrf_token, "decision": "approve", "note": "Known payee"},
            headers=session_headers(session),
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/transfers/{TRANSFER_ID}?decided=approve"
        call = bank["transactions"].calls("POST", path)[0]
        assert json.loads(call.content) == {"decision": "approve", "note": "Known payee"}
        assert call.headers["authorization"] == "Bearer t-rev"

    @pytest.mark.parametrize("csrf", [None, "", "forged"])
    async def test_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        bank: dict[str, FakeUpstream],
        csrf: str | None,
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=REVIEWER)
        data = {"decision": "approve"} | ({} if csrf is None else {"csrf_token": csrf})
        response = await client.post(
            f"/reviews/{TRANSFER_ID}", data=data, headers=session_headers(session)
        )
        assert response.status_code == 403
        assert "Nothing was changed" in response.text
        assert bank["transactions"].requests == []

    async def test_another_sessions_csrf_token_is_refused(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        mine = session_for_tests(app, access_token="t", scopes=REVIEWER)
        theirs = session_for_tests(app, access_token="t", scopes=REVIEWER)
        response = await client.post(
            f"/reviews/{TRANSFER_ID}",
            data={"decision": "approve", "csrf_token": theirs.csrf_token},
            headers=session_headers(mine),
        )
        assert response.status_code == 403
        assert bank["transactions"].requests == []

    async def test_a_forged_approve_without_the_scope_is_refused_by_the_api_and_shown(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        path = f"/v1/admin/transfers/{TRANSFER_ID}/review"
        bank["transactions"].routes[("POST", path)] = lambda _r: problem(
            403, "Forbidden", "The token lacks the scope reviews:write."
        )
        session = session_for_tests(app, access_token="t", scopes=AUDITOR, role=StaffRole.auditor)
        page = await client.get(f"/transfers/{TRANSFER_ID}", headers=session_headers(session))
        assert 'value="approve"' not in page.text  # not offered...
        response = await client.post(  # ...and forged anyway
            f"/reviews/{TRANSFER_ID}",
            data={"csrf_token": session.csrf_token, "decision": "approve"},
            headers=session_headers(session),
        )
        assert response.status_code == 403
        assert "Decision not recorded" in response.text
        assert "transactions answered 403 Forbidden: The token lacks the scope" in response.text

    @pytest.mark.parametrize(
        "data", [{"decision": "maybe"}, {"decision": "approve", "note": "x" * 141}]
    )
    async def test_a_malformed_decision_is_not_forwarded(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        bank: dict[str, FakeUpstream],
        data: dict[str, str],
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=REVIEWER)
        response = await client.post(
            f"/reviews/{TRANSFER_ID}",
            data={"csrf_token": session.csrf_token, **data},
            headers=session_headers(session),
        )
        assert response.status_code == 400
        assert bank["transactions"].requests == []


class TestAudit:
    async def test_the_timeline_merges_every_services_events(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=AUDITOR, role=StaffRole.auditor)
        response = await client.get(
            "/audit", params={"actor_id": "sagabank-worker"}, headers=session_headers(session)
        )
        assert response.status_code == 200, response.text
        for service in ("accounts", "transactions", "fraud", "notifications"):
            assert f"{service}.step" in response.text
            call = bank[service].calls("GET", "/v1/admin/audit-events")[0]
            assert parse_qs(call.url.query.decode())["actor_id"] == ["sagabank-worker"]

    async def test_each_chain_is_verified(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        for service in ("accounts", "transactions", "fraud"):
            bank[service].answer(
                "GET",
                "/v1/admin/audit-events/verify",
                {"service": service, "events_checked": 12, "ok": True},
            )
        session = session_for_tests(app, access_token="t", scopes=AUDITOR, role=StaffRole.auditor)
        response = await client.get("/audit/verification", headers=session_headers(session))
        assert response.status_code == 200
        assert response.text.count(">intact<") == 3
        assert "Not verified: 404" in response.text  # notifications, here

    async def test_a_reviewer_is_told_their_role_lacks_audit_read(
        self, client: httpx.AsyncClient, app: FastAPI, bank: dict[str, FakeUpstream]
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=REVIEWER)
        response = await client.get("/audit", headers=session_headers(session))
        assert "Your role does not hold audit:read." in response.text
        assert all(upstream.requests == [] for upstream in bank.values())
