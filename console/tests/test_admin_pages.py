"""The deny list and the webhook pages: what the APIs answer, what a role is offered, and
changes made only with the session's CSRF token, in the signed-in member's name."""

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fastapi import FastAPI

from console.testing import session_for_tests, session_headers
from console.tests.support import FakeUpstream, problem
from contracts.auth import STAFF_ROLE_SCOPES, PrincipalKind, StaffRole
from kit.testing import TestIssuer

ACCOUNT = uuid.UUID("0f6a3c1e-2b7d-4e8f-9a01-23456789abcd")
ENDPOINT = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
DELIVERY = uuid.UUID("a3bb189e-8bf9-3888-9912-ace4e6543002")
AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC).isoformat()
ADMIN = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.admin])
AUDITOR = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.auditor])
REVIEWER = frozenset(str(scope) for scope in STAFF_ROLE_SCOPES[StaffRole.reviewer])
STAFF_SUBJECT = "staff:6f1c2b1e-8f5a-4c39-9a51-0d3e2f7b9a10"
ENTRY = {
    "account_id": str(ACCOUNT),
    "reason": "Mule account <b>",
    "listed_by": "staff:someone",
    "listed_at": AT,
}


def staff_token(scopes: frozenset[str]) -> str:
    return TestIssuer().token(STAFF_SUBJECT, PrincipalKind.operator, scopes)


@pytest.fixture
def fraud(upstreams: dict[str, FakeUpstream]) -> FakeUpstream:
    fraud = upstreams["fraud"]
    fraud.answer("GET", "/v1/admin/deny-list", {"items": [ENTRY], "next_cursor": None})
    return fraud


class TestDenyList:
    async def test_shows_the_entries_and_offers_changes_to_an_admin(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream
    ) -> None:
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.get("/deny-list", headers=session_headers(session))
        assert response.status_code == 200, response.text
        assert "Mule account &lt;b&gt;" in response.text
        assert 'action="/deny-list"' in response.text
        assert f'action="/deny-list/{ACCOUNT}/remove"' in response.text

    async def test_an_auditor_reads_it_and_is_offered_no_change(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream
    ) -> None:
        session = session_for_tests(
            app, access_token=staff_token(AUDITOR), scopes=AUDITOR, role=StaffRole.auditor
        )
        response = await client.get("/deny-list", headers=session_headers(session))
        assert "Mule account" in response.text
        assert 'action="/deny-list"' not in response.text
        assert "/remove" not in response.text

    async def test_adding_names_the_signed_in_member_as_the_lister(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream
    ) -> None:
        fraud.answer("PUT", f"/v1/admin/deny-list/{ACCOUNT}", ENTRY, status=201)
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.post(
            "/deny-list",
            data={"csrf_token": session.csrf_token, "account_id": str(ACCOUNT), "reason": "Mule"},
            headers=session_headers(session),
        )
        assert response.status_code == 303, response.text
        [call] = fraud.calls("PUT", f"/v1/admin/deny-list/{ACCOUNT}")
        assert json.loads(call.content) == {"reason": "Mule", "listed_by": STAFF_SUBJECT}

    async def test_removing_forwards_the_delete(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream
    ) -> None:
        path = f"/v1/admin/deny-list/{ACCOUNT}"
        fraud.routes[("DELETE", path)] = lambda _request: httpx.Response(204)
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.post(
            f"/deny-list/{ACCOUNT}/remove",
            data={"csrf_token": session.csrf_token},
            headers=session_headers(session),
        )
        assert response.status_code == 303, response.text
        assert len(fraud.calls("DELETE", path)) == 1

    @pytest.mark.parametrize(
        "data",
        [
            {"account_id": "not-an-id", "reason": "Mule"},
            {"account_id": str(ACCOUNT), "reason": ""},
            {"account_id": str(ACCOUNT), "reason": "x" * 301},
        ],
    )
    async def test_bad_input_is_not_forwarded(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream, data: dict[str, str]
    ) -> None:
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.post(
            "/deny-list",
            data={"csrf_token": session.csrf_token, **data},
            headers=session_headers(session),
        )
        assert response.status_code == 400
        assert fraud.requests == []

    @pytest.mark.parametrize("path", ["/deny-list", f"/deny-list/{ACCOUNT}/remove"])
    async def test_without_the_csrf_token_nothing_is_forwarded(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream, path: str
    ) -> None:
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.post(
            path,
            data={"account_id": str(ACCOUNT), "reason": "Mule"},
            headers=session_headers(session),
        )
        assert response.status_code == 403
        assert fraud.requests == []

    async def test_a_forged_addition_is_refused_by_the_api_and_shown(
        self, client: httpx.AsyncClient, app: FastAPI, fraud: FakeUpstream
    ) -> None:
        fraud.routes[("PUT", f"/v1/admin/deny-list/{ACCOUNT}")] = lambda _request: problem(
            403, "Forbidden", "This operation needs the scope accounts:admin."
        )
        session = session_for_tests(
            app, access_token=staff_token(AUDITOR), scopes=AUDITOR, role=StaffRole.auditor
        )
        response = await client.post(
            "/deny-list",
            data={"csrf_token": session.csrf_token, "account_id": str(ACCOUNT), "reason": "x"},
            headers=session_headers(session),
        )
        assert response.status_code == 403
        assert "fraud answered 403 Forbidden: This operation needs the scope" in response.text


def delivery_body(status: str = "failed") -> dict[str, Any]:
    return {
        "id": str(DELIVERY),
        "webhook_id": "msg_1",
        "endpoint_id": str(ENDPOINT),
        "event_id": str(uuid.uuid4()),
        "event_type": "transfer.completed",
        "status": status,
        "attempts_made": 3,
        "next_attempt_at": None,
        "last_attempt_at": AT,
        "last_status_code": 500,
        "created_at": AT,
        "updated_at": AT,
    }


class TestWebhooks:
    async def test_a_customers_endpoints(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        notifications = upstreams["notifications"]
        endpoint = {
            "id": str(ENDPOINT),
            "customer_id": "cust-1",
            "url": "https://hooks.example/in",
            "event_types": ["transfer.completed"],
            "description": None,
            "enabled": False,
            "disabled_reason": "gone",
            "created_at": AT,
            "updated_at": AT,
        }
        notifications.answer(
            "GET", "/v1/webhook-endpoints", {"items": [endpoint], "next_cursor": None}
        )
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(
            "/webhooks", params={"customer_id": "cust-1"}, headers=session_headers(session)
        )
        assert response.status_code == 200, response.text
        query = parse_qs(notifications.requests[0].url.query.decode())
        assert query["customer_id"] == ["cust-1"]
        assert f'href="/webhooks/{ENDPOINT}"' in response.text
        assert ">disabled</span> (gone)" in response.text

    async def test_an_endpoints_deliveries_filtered_by_status(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        notifications = upstreams["notifications"]
        path = f"/v1/webhook-endpoints/{ENDPOINT}/deliveries"
        notifications.answer("GET", path, {"items": [delivery_body()], "next_cursor": None})
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(
            f"/webhooks/{ENDPOINT}", params={"status": "failed"}, headers=session_headers(session)
        )
        assert response.status_code == 200, response.text
        assert parse_qs(notifications.requests[0].url.query.decode())["status"] == ["failed"]
        assert f'href="/deliveries/{DELIVERY}"' in response.text
        assert ">failed</span>" in response.text

    async def test_a_delivery_and_its_attempts(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        attempt = {
            "number": 1,
            "started_at": AT,
            "status_code": 500,
            "latency_ms": 120,
            "outcome": "failed",
            "error": None,
            "response_excerpt": "upstream exploded",
        }
        upstreams["notifications"].answer(
            "GET", f"/v1/deliveries/{DELIVERY}", {**delivery_body(), "attempts": [attempt]}
        )
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(f"/deliveries/{DELIVERY}", headers=session_headers(session))
        assert response.status_code == 200, response.text
        assert "upstream exploded" in response.text
        assert "120 ms" in response.text
        # Finished, and the member holds accounts:admin: redelivery is offered, CSRF-checked.
        form = re.search(
            rf'<form method="post" action="/deliveries/{DELIVERY}/redeliver"[^>]*>(.*?)</form>',
            response.text,
            re.DOTALL,
        )
        assert form is not None, response.text
        assert f'name="csrf_token" value="{session.csrf_token}"' in form.group(1)
        assert ">Redeliver</button>" in form.group(1)

    async def test_a_pending_delivery_is_not_offered_for_redelivery(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        """The API refuses it (409) while attempts go on: nothing to press."""
        upstreams["notifications"].answer(
            "GET", f"/v1/deliveries/{DELIVERY}", {**delivery_body("pending"), "attempts": []}
        )
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        response = await client.get(f"/deliveries/{DELIVERY}", headers=session_headers(session))
        assert response.status_code == 200, response.text
        assert "/redeliver" not in response.text
        assert response.text.count('method="post"') == 1  # signing out, only


class TestRedeliver:
    """An admin sends a finished delivery again from its page; the API's answer is shown."""

    PATH = f"/v1/deliveries/{DELIVERY}/redeliver"

    async def test_valid_forwards_with_the_members_token_and_shows_the_new_state(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        notifications = upstreams["notifications"]
        notifications.answer("POST", self.PATH, delivery_body("pending"), status=202)
        notifications.answer(
            "GET", f"/v1/deliveries/{DELIVERY}", {**delivery_body("pending"), "attempts": []}
        )
        token = staff_token(ADMIN)
        session = session_for_tests(app, access_token=token, scopes=ADMIN)
        response = await client.post(
            f"/deliveries/{DELIVERY}/redeliver",
            data={"csrf_token": session.csrf_token},
            headers=session_headers(session),
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/deliveries/{DELIVERY}?redelivered=pending"
        [call] = notifications.calls("POST", self.PATH)
        assert call.headers["authorization"] == f"Bearer {token}"
        page = await client.get(response.headers["location"], headers=session_headers(session))
        assert "Redelivery requested: the delivery is now pending." in page.text

    async def test_a_made_up_state_in_the_address_is_not_shown(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        upstreams["notifications"].answer(
            "GET", f"/v1/deliveries/{DELIVERY}", {**delivery_body(), "attempts": []}
        )
        session = session_for_tests(app, access_token="t", scopes=ADMIN)
        page = await client.get(
            f"/deliveries/{DELIVERY}",
            params={"redelivered": "<b>sent to the moon</b>"},
            headers=session_headers(session),
        )
        assert page.status_code == 200
        assert "Redelivery requested" not in page.text
        assert "moon" not in page.text

    @pytest.mark.parametrize(
        ("status", "title", "detail"),
        [
            (409, "Delivery pending", "the delivery is still being attempted; wait for it"),
            (409, "Webhook endpoint disabled", "enable the endpoint before redelivering to it"),
            (404, "Delivery not found", f"no delivery {DELIVERY}"),
        ],
    )
    async def test_a_refusal_shows_the_problems_detail(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        upstreams: dict[str, FakeUpstream],
        status: int,
        title: str,
        detail: str,
    ) -> None:
        upstreams["notifications"].routes[("POST", self.PATH)] = lambda _request: problem(
            status, title, detail
        )
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.post(
            f"/deliveries/{DELIVERY}/redeliver",
            data={"csrf_token": session.csrf_token},
            headers=session_headers(session),
        )
        assert response.status_code == status
        assert f"notifications answered {status} {title}: {detail}" in response.text
        assert f'href="/deliveries/{DELIVERY}"' in response.text

    async def test_a_forged_redelivery_is_refused_by_the_api_and_shown(
        self, client: httpx.AsyncClient, app: FastAPI, upstreams: dict[str, FakeUpstream]
    ) -> None:
        """Not offered to an auditor; forged anyway, it is forwarded and the API refuses."""
        upstreams["notifications"].routes[("POST", self.PATH)] = lambda _request: problem(
            403, "Insufficient scope", "This operation needs the scope webhooks:manage."
        )
        session = session_for_tests(
            app, access_token=staff_token(AUDITOR), scopes=AUDITOR, role=StaffRole.auditor
        )
        response = await client.post(
            f"/deliveries/{DELIVERY}/redeliver",
            data={"csrf_token": session.csrf_token},
            headers=session_headers(session),
        )
        assert response.status_code == 403
        assert "notifications answered 403 Insufficient scope" in response.text

    @pytest.mark.parametrize("csrf", [None, "", "wrong"])
    async def test_without_the_csrf_token_nothing_is_forwarded(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        upstreams: dict[str, FakeUpstream],
        csrf: str | None,
    ) -> None:
        session = session_for_tests(app, access_token=staff_token(ADMIN), scopes=ADMIN)
        response = await client.post(
            f"/deliveries/{DELIVERY}/redeliver",
            data={} if csrf is None else {"csrf_token": csrf},
            headers=session_headers(session),
        )
        assert response.status_code == 403
        assert upstreams["notifications"].requests == []

    @pytest.mark.parametrize(
        "path", ["/webhooks?customer_id=c", f"/webhooks/{ENDPOINT}", f"/deliveries/{DELIVERY}"]
    )
    async def test_a_reviewer_is_told_their_role_lacks_accounts_admin(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        upstreams: dict[str, FakeUpstream],
        path: str,
    ) -> None:
        session = session_for_tests(app, access_token="t", scopes=REVIEWER)
        response = await client.get(path, headers=session_headers(session))
        assert "Your role does not hold accounts:admin." in response.text
        assert upstreams["notifications"].requests == []
        assert 'href="/webhooks"' not in response.text  # not in the navigation either
        assert "/redeliver" not in response.text
