"""The operator console on the live bank, as `sagabank up` runs it: the launcher's console
answers with its headers and sends browsers to the real issuer; a console app in this
process (its test seam holding the bank's real tokens) shows what the services answer,
records a reviewer's approval, shows the API's refusal of a forged one, lets an operator
redeliver a customer's failed webhook delivery, and signs out by revoking the refresh
token at the real issuer. The browser sign-in joins with the issuer's authorization code
flow."""

import uuid
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from console.config import Settings
from console.main import create_app
from console.testing import session_for_tests, session_headers, store_of
from contracts.auth import CUSTOMER_SCOPES, OPERATOR_SCOPES, TOKEN_PATH
from contracts.notifications import WEBHOOK_ENDPOINTS_PATH
from kit.testing import app_client
from notifications.tests.support import Receiver, Reply, running_receiver, wait_for, wait_until
from tests.bank import CONSOLE, Bank, Customer
from tests.flows import TERMINAL, funded_pair, request_transfer, wait_for_status

pytestmark = pytest.mark.system

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
def console_app(bank: Bank) -> FastAPI:
    """A console in this process, on the live bank's services and issuer."""
    settings = Settings(
        public_url=bank.url(CONSOLE),
        accounts_url=bank.url("accounts"),
        transactions_url=bank.url("transactions"),
        fraud_url=bank.url("fraud"),
        notifications_url=bank.url("notifications"),
        issuer_url=bank.url("accounts"),
        issuer_public_url=bank.url("accounts"),
        temporal_ui_url=bank.temporal_ui_url,
        log_json=True,
    )
    return create_app(settings)


@pytest.fixture
async def console(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(console_app) as client:
        yield client


async def operator_token(http: httpx.AsyncClient, bank: Bank) -> str:
    return (await bank.operator_headers(http))["Authorization"].removeprefix("Bearer ")


async def refresh_token_of(http: httpx.AsyncClient, bank: Bank, customer: Customer) -> str:
    """A refresh token from the real issuer (the password grant: the only one minting
    refresh tokens until the code flow is merged)."""
    response = await http.post(
        f"{bank.url('accounts')}{TOKEN_PATH}",
        data={"grant_type": "password", "username": customer.email, "password": customer.password},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["refresh_token"]
    return token


class TestTheLaunchersConsole:
    async def test_ready_and_sends_browsers_to_the_issuer_with_pkce(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        assert (await http.get(f"{bank.url(CONSOLE)}/readyz")).status_code == 200
        page = await http.get(f"{bank.url(CONSOLE)}/transfers")
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/sign-in"
        assert page.headers["content-security-policy"] == CSP
        sign_in = await http.get(f"{bank.url(CONSOLE)}/auth/sign-in")
        assert sign_in.status_code == 303
        for name, value in (
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ):
            assert sign_in.headers[name] == value
        location = urlsplit(sign_in.headers["location"])
        assert f"{location.scheme}://{location.netloc}" == bank.url("accounts")
        assert location.path == "/v1/oauth/authorize"
        query = parse_qs(location.query)
        assert query["redirect_uri"] == [f"{bank.url(CONSOLE)}/auth/callback"]
        assert query["client_id"] == ["sagabank-console"]
        assert query["code_challenge_method"] == ["S256"]
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(sign_in.headers["set-cookie"])
        [morsel] = cookie.values()
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "lax"
        assert morsel["path"] == "/"
        assert not morsel["secure"]  # http on the loopback: the local stack

    async def test_the_banner_lists_the_console(self, bank: Bank) -> None:
        assert f"{CONSOLE}" in bank.output()
        assert bank.url(CONSOLE) in bank.output()


class TestAReviewThroughTheConsole:
    async def test_the_pages_show_the_transfer_and_an_approval_completes_it(
        self, bank: Bank, http: httpx.AsyncClient, console: httpx.AsyncClient, console_app: FastAPI
    ) -> None:
        payer, source, _payee, target = await funded_pair(http, bank, funded_minor=12_000_00)
        transfer_id = await request_transfer(http, bank, payer, source, target, 10_000_00)
        assert (await wait_for_status(http, bank, payer, transfer_id, {"in_review"}))[
            "status"
        ] == "in_review"
        session = session_for_tests(
            console_app, access_token=await operator_token(http, bank), scopes=OPERATOR_SCOPES
        )
        headers = session_headers(session)

        search = await console.get(
            "/transfers", params={"account_id": source, "status": "in_review"}, headers=headers
        )
        assert search.status_code == 200, search.text
        assert f'href="/transfers/{transfer_id}"' in search.text
        queue = await console.get("/reviews", headers=headers)
        assert f'href="/transfers/{transfer_id}"' in queue.text
        page = await console.get(f"/transfers/{transfer_id}", headers=headers)
        assert page.status_code == 200, page.text
        assert "10,000.00 EUR" in page.text
        assert ">in review</span>" in page.text
        assert "<strong>hold</strong>" in page.text  # the steps
        assert "large_amount" in page.text  # the fraud service's reasons
        assert "Not shown" not in page.text  # every section answered
        assert "transactions" in page.text  # audit events of the services
        assert f"/workflows/transfer-{transfer_id}" in page.text
        assert 'value="approve"' in page.text

        decided = await console.post(
            f"/reviews/{transfer_id}",
            data={"csrf_token": session.csrf_token, "decision": "approve", "note": "Known"},
            headers=headers,
        )
        assert decided.status_code == 303, decided.text
        transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
        assert transfer["status"] == "completed", transfer
        after = await console.get(f"/transfers/{transfer_id}", headers=headers)
        assert ">completed</span>" in after.text
        assert "<strong>post</strong>" in after.text

    async def test_a_forged_approval_is_refused_by_the_api_and_shown(
        self, bank: Bank, http: httpx.AsyncClient, console: httpx.AsyncClient, console_app: FastAPI
    ) -> None:
        payer, source, _payee, target = await funded_pair(http, bank, funded_minor=12_000_00)
        transfer_id = await request_transfer(http, bank, payer, source, target, 10_000_00)
        await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
        # A token without reviews:write (the bank mints no staff token yet: a customer's).
        session = session_for_tests(console_app, access_token=payer.token, scopes=CUSTOMER_SCOPES)
        refused = await console.post(
            f"/reviews/{transfer_id}",
            data={"csrf_token": session.csrf_token, "decision": "approve"},
            headers=session_headers(session),
        )
        assert refused.status_code == 403, refused.text
        assert "Decision not recorded" in refused.text
        assert "transactions answered 403" in refused.text
        still = await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
        assert still["status"] == "in_review"


class TestTheDenyListThroughTheConsole:
    async def test_an_account_listed_in_the_members_name_and_taken_off(
        self, bank: Bank, http: httpx.AsyncClient, console: httpx.AsyncClient, console_app: FastAPI
    ) -> None:
        session = session_for_tests(
            console_app, access_token=await operator_token(http, bank), scopes=OPERATOR_SCOPES
        )
        headers = session_headers(session)
        account_id = str(uuid.uuid4())
        listed = await console.post(
            "/deny-list",
            data={"csrf_token": session.csrf_token, "account_id": account_id, "reason": "Mule"},
            headers=headers,
        )
        assert listed.status_code == 303, listed.text
        page = await console.get("/deny-list", headers=headers)
        assert account_id in page.text
        assert session.subject is not None
        assert session.subject in page.text  # listed by the token's subject
        removed = await console.post(
            f"/deny-list/{account_id}/remove",
            data={"csrf_token": session.csrf_token},
            headers=headers,
        )
        assert removed.status_code == 303, removed.text
        assert account_id not in (await console.get("/deny-list", headers=headers)).text


async def _failed_delivery(
    http: httpx.AsyncClient, bank: Bank, receiver: Receiver
) -> tuple[Customer, str, str]:
    """A customer's endpoint at `receiver` (answering 410 Gone) and a transfer's delivery to
    it, failed and the endpoint disabled by the dispatcher: (customer, endpoint, delivery)."""
    payer, source, _payee, target = await funded_pair(http, bank, funded_minor=100_00)
    registered = await http.post(
        f"{bank.url('notifications')}{WEBHOOK_ENDPOINTS_PATH}",
        json={"url": receiver.url(), "event_types": ["transfer.completed"]},
        headers=payer.headers,
    )
    assert registered.status_code == 201, registered.text
    endpoint_id: str = registered.json()["id"]
    transfer_id = await request_transfer(http, bank, payer, source, target, 10_00)
    assert (await wait_for_status(http, bank, payer, transfer_id, TERMINAL))["status"] == (
        "completed"
    )
    deliveries = f"{bank.url('notifications')}{WEBHOOK_ENDPOINTS_PATH}/{endpoint_id}/deliveries"

    async def failed() -> bool:
        listed = await http.get(deliveries, params={"status": "failed"}, headers=payer.headers)
        return listed.status_code == 200 and len(listed.json()["items"]) == 1

    await wait_for(failed, timeout_seconds=30, what="the delivery to fail on 410")
    listed = await http.get(deliveries, headers=payer.headers)
    [delivery] = listed.json()["items"]
    return payer, endpoint_id, delivery["id"]


class TestARedeliveryThroughTheConsole:
    async def test_the_operator_sends_a_failed_delivery_again(
        self, bank: Bank, http: httpx.AsyncClient, console: httpx.AsyncClient, console_app: FastAPI
    ) -> None:
        async with running_receiver() as receiver:
            receiver.default = Reply(410)
            payer, endpoint_id, delivery_id = await _failed_delivery(http, bank, receiver)
            session = session_for_tests(
                console_app, access_token=await operator_token(http, bank), scopes=OPERATOR_SCOPES
            )
            headers = session_headers(session)
            listed = await console.get(
                f"/webhooks/{endpoint_id}", params={"status": "failed"}, headers=headers
            )
            assert f'href="/deliveries/{delivery_id}"' in listed.text
            page = await console.get(f"/deliveries/{delivery_id}", headers=headers)
            assert f'action="/deliveries/{delivery_id}/redeliver"' in page.text
            form = {"csrf_token": session.csrf_token}

            # The endpoint said 410: the API refuses until its customer enables it again.
            refused = await console.post(
                f"/deliveries/{delivery_id}/redeliver", data=form, headers=headers
            )
            assert refused.status_code == 409, refused.text
            assert "enable the endpoint before redelivering to it" in refused.text
            assert len(receiver.requests) == 1

            receiver.default = Reply(204)
            enabled = await http.post(
                f"{bank.url('notifications')}{WEBHOOK_ENDPOINTS_PATH}/{endpoint_id}/enable",
                headers=payer.headers,
            )
            assert enabled.status_code == 200, enabled.text
            redelivered = await console.post(
                f"/deliveries/{delivery_id}/redeliver", data=form, headers=headers
            )
            assert redelivered.status_code == 303, redelivered.text
            assert redelivered.headers["location"].endswith("?redelivered=pending")
            await wait_until(lambda: len(receiver.requests) == 2, what="the redelivery")
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]

        async def succeeded() -> bool:
            shown = await console.get(f"/deliveries/{delivery_id}", headers=headers)
            return "<dt>Status</dt><dd>succeeded</dd>" in shown.text

        await wait_for(succeeded, timeout_seconds=10, what="the page to show it succeeded")


class TestSignOut:
    async def test_revokes_the_refresh_token_at_the_issuer(
        self, bank: Bank, http: httpx.AsyncClient, console: httpx.AsyncClient, console_app: FastAPI
    ) -> None:
        customer = await bank.register_customer(http, "signout")
        refresh_token = await refresh_token_of(http, bank, customer)
        session = session_for_tests(
            console_app,
            access_token=customer.token,
            refresh_token=refresh_token,
            scopes=CUSTOMER_SCOPES,
        )
        without_csrf = await console.post("/auth/sign-out", headers=session_headers(session))
        assert without_csrf.status_code == 403
        assert store_of(console_app).find(session.id) is session

        signed_out = await console.post(
            "/auth/sign-out",
            data={"csrf_token": session.csrf_token},
            headers=session_headers(session),
        )
        assert signed_out.status_code == 303
        assert store_of(console_app).find(session.id) is None
        renewal = await http.post(
            f"{bank.url('accounts')}{TOKEN_PATH}",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        assert renewal.status_code == 400, renewal.text
        assert renewal.json()["error"] == "invalid_grant"
