"""Identity on the live bank, as `sagabank up` runs it: every route of every service, read
from its own OpenAPI document, refuses a caller without a token and one whose token was
signed by a key the issuer never published; customers see only their own objects; a
transfer from someone else's account starts nothing; `sagabank token` hands out tokens
that work."""

import asyncio
import base64
import hashlib
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
from temporalio.client import Client

from contracts.auth import (
    AUTHORIZE_PATH,
    CUSTOMER_SCOPES,
    JWKS_PATH,
    METADATA_PATH,
    OPERATOR_SCOPES,
    REVOCATION_PATH,
    TOKEN_ISSUER_DEFAULT,
    TOKEN_PATH,
    PrincipalKind,
    audiences_of,
)
from contracts.problem import PROBLEM_CONTENT_TYPE
from contracts.staff import STAFF_PROFILE_PATH
from contracts.transfers import CALLBACK_CONFIRMATIONS_PATH, TRANSFERS_PATH
from kit.testing import TestIssuer
from sagabank.config import CONSOLE_CALLBACK_PATH
from tests.bank import CONSOLE, CUSTOMERS_PATH, OPERATOR_CLIENT_ID, SERVICES, Bank, Customer

pytestmark = pytest.mark.system

METHODS = ("get", "post", "put", "patch", "delete")
# Reachable without a token on purpose: probes, the API description, the issuer's public
# edge (keys, tokens, its RFC 8414 metadata, RFC 7009 revocation, where holding the
# token is the proof, and the sign-in page with its form and stylesheet), and the callback
# endpoint (it verifies a Standard Webhooks signature instead). The staff member's own
# profile (STAFF_PROFILE_PATH) is not public: it needs a staff member's token.
PUBLIC: dict[str, set[tuple[str, str]]] = {
    "accounts": {
        ("get", JWKS_PATH),
        ("post", TOKEN_PATH),
        ("post", CUSTOMERS_PATH),
        ("get", METADATA_PATH),
        ("post", REVOCATION_PATH),
        ("get", AUTHORIZE_PATH),
        ("post", AUTHORIZE_PATH),
        ("get", "/v1/oauth/sign-in.css"),
    },
    "transactions": {("post", CALLBACK_CONFIRMATIONS_PATH)},
    "fraud": set(),
    "notifications": set(),
}
ALWAYS_PUBLIC = {("get", "/healthz"), ("get", "/readyz")}
WAIT_SECONDS_MAX = 60.0
POLL_INTERVAL_SECONDS = 0.2


async def protected_routes(
    http: httpx.AsyncClient, bank: Bank, service: str
) -> list[tuple[str, str]]:
    """(method, path with every parameter filled) of each route the service documents,
    but the public ones."""
    response = await http.get(f"{bank.url(service)}/openapi.json")
    assert response.status_code == 200, response.text
    routes = []
    for path, operations in response.json()["paths"].items():
        for method in operations:
            if method not in METHODS or (method, path) in PUBLIC[service] | ALWAYS_PUBLIC:
                continue
            filled = path
            while "{" in filled:
                start, end = filled.index("{"), filled.index("}")
                filled = filled[:start] + str(uuid.uuid4()) + filled[end + 1 :]
            routes.append((method, filled))
    return routes


def unpublished_key_headers() -> dict[str, str]:
    """A well-formed token for the right issuer and audience, from a key nobody published."""
    impostor = TestIssuer(issuer=TOKEN_ISSUER_DEFAULT)
    token = impostor.token(
        "operator", PrincipalKind.operator, OPERATOR_SCOPES, aud=audiences_of(OPERATOR_SCOPES)
    )
    return {"Authorization": f"Bearer {token}"}


def customer_impostor_headers() -> dict[str, str]:
    impostor = TestIssuer(issuer=TOKEN_ISSUER_DEFAULT)
    token = impostor.token(
        str(uuid.uuid4()),
        PrincipalKind.customer,
        CUSTOMER_SCOPES,
        aud=audiences_of(CUSTOMER_SCOPES),
    )
    return {"Authorization": f"Bearer {token}"}


class TestEveryRoute:
    @pytest.mark.parametrize("service", SERVICES)
    async def test_refuses_no_token_and_an_unpublished_key(
        self, bank: Bank, http: httpx.AsyncClient, service: str
    ) -> None:
        routes = await protected_routes(http, bank, service)
        assert len(routes) >= 3, routes
        cells: list[tuple[str, str, str, int]] = []
        for headers_name, headers in (
            ("no-token", {}),
            ("unpublished-key", unpublished_key_headers()),
            ("unpublished-key-customer", customer_impostor_headers()),
        ):
            for method, path in routes:
                response = await http.request(method, f"{bank.url(service)}{path}", headers=headers)
                cells.append((headers_name, method, path, response.status_code))
                if response.status_code == 401:
                    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
                    assert response.json()["type"] == "urn:sagabank:problem:unauthorized"
        wrong = [cell for cell in cells if cell[3] != 401]
        assert wrong == [], wrong

    async def test_probes_and_the_issuers_edge_stay_public(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        for service in SERVICES:
            assert (await http.get(f"{bank.url(service)}/healthz")).status_code == 200
        jwks = await http.get(f"{bank.url('accounts')}{JWKS_PATH}")
        assert jwks.status_code == 200
        assert jwks.json()["keys"], "the issuer publishes its signing key"
        metadata = await http.get(f"{bank.url('accounts')}{METADATA_PATH}")
        assert metadata.status_code == 200
        assert metadata.json()["revocation_endpoint"].endswith(REVOCATION_PATH)
        assert metadata.json()["authorization_endpoint"].endswith(AUTHORIZE_PATH)


async def get_as(http: httpx.AsyncClient, url: str, customer: Customer) -> httpx.Response:
    return await http.get(url, headers=customer.headers)


async def funded_customer(
    http: httpx.AsyncClient, bank: Bank, name: str, amount_minor: int
) -> tuple[Customer, str]:
    customer = await bank.register_customer(http, name)
    account_id = await bank.open_account(http, customer)
    if amount_minor > 0:
        await bank.deposit(http, account_id, amount_minor)
    return customer, account_id


async def start_transfer(
    http: httpx.AsyncClient,
    bank: Bank,
    customer: Customer,
    source: str,
    target: str,
    amount_minor: int,
) -> httpx.Response:
    return await http.post(
        f"{bank.url('transactions')}{TRANSFERS_PATH}",
        json={
            "source_account_id": source,
            "target_account_id": target,
            "amount_minor": amount_minor,
            "currency": "EUR",
        },
        headers={**customer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )


async def wait_completed(
    http: httpx.AsyncClient, bank: Bank, customer: Customer, transfer_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while True:
        response = await get_as(
            http, f"{bank.url('transactions')}{TRANSFERS_PATH}/{transfer_id}", customer
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] not in ("pending", "in_review"):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


class TestOwnership:
    async def test_another_customers_account_and_transfer_do_not_exist(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        alice, alice_account = await funded_customer(http, bank, "alice", 100_00)
        bob, bob_account = await funded_customer(http, bank, "bob", 0)
        created = await start_transfer(http, bank, alice, alice_account, bob_account, 10_00)
        assert created.status_code == 202, created.text
        transfer_id = created.json()["id"]
        accounts = f"{bank.url('accounts')}/v1/accounts"
        transfers = f"{bank.url('transactions')}{TRANSFERS_PATH}"

        foreign_account = await get_as(http, f"{accounts}/{alice_account}", bob)
        missing_account = await get_as(http, f"{accounts}/{uuid.uuid4()}", bob)
        foreign_transfer = await get_as(http, f"{transfers}/{transfer_id}", bob)
        missing_transfer = await get_as(http, f"{transfers}/{uuid.uuid4()}", bob)

        # Exactly as if it did not exist: same status, same problem type.
        assert foreign_account.status_code == missing_account.status_code == 404
        assert foreign_account.json()["type"] == missing_account.json()["type"]
        assert foreign_transfer.status_code == missing_transfer.status_code == 404
        assert foreign_transfer.json()["type"] == missing_transfer.json()["type"]
        # While the owner sees both.
        assert (await get_as(http, f"{accounts}/{alice_account}", alice)).status_code == 200
        assert (await get_as(http, f"{transfers}/{transfer_id}", alice)).status_code == 200

    async def test_transfer_from_a_foreign_account_starts_nothing(
        self, bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
    ) -> None:
        alice, alice_account = await funded_customer(http, bank, "alice", 100_00)
        mallory, mallory_account = await funded_customer(http, bank, "mallory", 0)

        stolen = await start_transfer(http, bank, mallory, alice_account, mallory_account, 99_00)

        assert stolen.status_code == 404, stolen.text
        missing = await start_transfer(http, bank, mallory, str(uuid.uuid4()), mallory_account, 1)
        assert stolen.json()["type"] == missing.json()["type"]
        # Alice's own transfer afterwards is the only workflow ever started from her
        # account: once it is visible, an earlier one would be too.
        own = await start_transfer(http, bank, alice, alice_account, mallory_account, 5_00)
        assert own.status_code == 202, own.text
        assert (await wait_completed(http, bank, alice, own.json()["id"]))["status"] == "completed"
        query = f"SourceAccountId = '{alice_account}'"
        deadline = time.monotonic() + WAIT_SECONDS_MAX
        while True:
            started = [workflow.id async for workflow in bank_temporal.list_workflows(query)]
            if started:
                break
            assert time.monotonic() < deadline, "alice's workflow never became visible"
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
        assert started == [f"transfer-{own.json()['id']}"]
        balances = (
            await get_as(http, f"{bank.url('accounts')}/v1/accounts/{alice_account}", alice)
        ).json()["balances"]
        assert balances["posted_minor"] == 100_00 - 5_00


CONSOLE_CLIENT_ID = "sagabank-console"


async def staff_signed_in(bank: Bank, role: str) -> tuple[str, dict[str, Any]]:
    """A member added with `sagabank staff add`, signed in through the console's client as
    a browser would (sign-in page, form, code, PKCE exchange): their email and tokens."""
    email = f"{role}-{uuid.uuid4().hex[:10]}@staff.example"
    password = secrets.token_urlsafe(18)
    added = bank.sagabank("staff", "add", "--email", email, "--role", role, "--password", password)
    assert added.returncode == 0, added.stderr
    [otpauth_uri] = [line for line in added.stdout.splitlines() if line.startswith("otpauth://")]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    # The console's callback on the port this bank gave it (the launcher registers it).
    console_callback = f"{bank.url(CONSOLE)}{CONSOLE_CALLBACK_PATH}"
    query = {
        "response_type": "code",
        "client_id": CONSOLE_CLIENT_ID,
        "redirect_uri": console_callback,
        "scope": "reviews:write transfers:read accounts:read",
        "state": "system-test",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    issuer = bank.url("accounts")
    async with httpx.AsyncClient(base_url=issuer, timeout=10.0) as browser:
        page = await browser.get(AUTHORIZE_PATH, params=query)
        assert page.status_code == 200, page.text
        [csrf_token] = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)
        [secret] = parse_qs(urlsplit(otpauth_uri).query)["secret"]
        totp = pyotp.TOTP(secret).now()
        form = query | {"csrf_token": csrf_token, "email": email, "password": password}
        posted = await browser.post(AUTHORIZE_PATH, data=form | {"totp": totp})
        assert posted.status_code == 303, posted.text
        answer = parse_qs(urlsplit(posted.headers["location"]).query)
        assert answer["state"] == ["system-test"]
        exchanged = await browser.post(
            TOKEN_PATH,
            data={
                "grant_type": "authorization_code",
                "code": answer["code"][0],
                "redirect_uri": console_callback,
                "client_id": CONSOLE_CLIENT_ID,
                "code_verifier": verifier,
            },
        )
    assert exchanged.status_code == 200, exchanged.text
    tokens: dict[str, Any] = exchanged.json()
    return email, tokens


class TestStaffSignIn:
    async def test_a_member_signs_in_through_the_console_client_and_reads_their_profile(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        email, tokens = await staff_signed_in(bank, "reviewer")
        profile_url = f"{bank.url('accounts')}{STAFF_PROFILE_PATH}"

        profile = await http.get(
            profile_url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )

        assert profile.status_code == 200, profile.text
        assert (profile.json()["email"], profile.json()["role"]) == (email, "reviewer")
        assert tokens["scope"] == "accounts:read reviews:write transfers:read"
        # The operator client's token is no person's: it reads no staff profile.
        operator = await http.get(profile_url, headers=await bank.operator_headers(http))
        assert operator.status_code == 403, operator.text


class TestTokenCommand:
    async def test_operator_token_works(self, bank: Bank, http: httpx.AsyncClient) -> None:
        result = bank.sagabank("token", "--operator")
        assert result.returncode == 0, result.stderr
        [token] = result.stdout.splitlines()
        assert token.count(".") == 2
        invariants = await http.get(
            f"{bank.url('accounts')}/v1/admin/ledger/invariants",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert invariants.status_code == 200, invariants.text
        assert bank.operator_client_secret not in result.stdout + result.stderr

    async def test_customer_token_sees_the_customers_accounts(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        customer = await bank.register_customer(http, "cli-customer")
        account_id = await bank.open_account(http, customer)

        result = bank.sagabank(
            "token", "--customer", customer.email, "--password", customer.password
        )

        assert result.returncode == 0, result.stderr
        [token] = result.stdout.splitlines()
        listed = await http.get(
            f"{bank.url('accounts')}/v1/accounts", headers={"Authorization": f"Bearer {token}"}
        )
        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()["items"]] == [account_id]

    async def test_wrong_password_is_refused_clearly(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        customer = await bank.register_customer(http, "cli-typo")
        wrong = f"{customer.password}-typo"

        result = bank.sagabank("token", "--customer", customer.email, "--password", wrong)

        assert result.returncode == 1
        assert result.stdout == ""
        assert "invalid_grant" in result.stderr
        assert wrong not in result.stderr

    def test_ready_table_names_the_operator_client(self, bank: Bank) -> None:
        output = bank.output()
        assert OPERATOR_CLIENT_ID in output
        assert "sagabank token --operator" in output
        key = bank.state_dir / "signing-keys" / "dev.pem"
        assert key.stat().st_mode & 0o777 == 0o600
