"""Swagger UI's Authorize on the live bank, as `sagabank up` runs it: each service's
OpenAPI names the running issuer's token endpoint, and a page on another service's origin
obtains a token from it as the browser would (CORS), with the password grant or the
docs' public client and PKCE (docs/decisions/0040)."""

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from contracts.auth import AUTHORIZE_PATH, DOCS_CLIENT_ID, DOCS_REDIRECT_PATH, TOKEN_PATH
from contracts.transfers import TRANSFERS_PATH
from tests.bank import SERVICES, Bank, Customer

pytestmark = pytest.mark.system


@pytest.mark.parametrize("service", SERVICES)
async def test_each_spec_names_the_running_issuer(
    bank: Bank, http: httpx.AsyncClient, service: str
) -> None:
    document = (await http.get(f"{bank.url(service)}/openapi.json")).json()
    flows = document["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["password"]["tokenUrl"] == f"{bank.url('accounts')}{TOKEN_PATH}"
    assert flows["authorizationCode"]["authorizationUrl"] == (
        f"{bank.url('accounts')}{AUTHORIZE_PATH}"
    )


async def preflight_allows(http: httpx.AsyncClient, bank: Bank, origin: str) -> bool:
    """Whether the issuer lets a page on `origin` post to its token endpoint."""
    response = await http.options(
        f"{bank.url('accounts')}{TOKEN_PATH}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    return (
        response.status_code == 200
        and response.headers.get("access-control-allow-origin") == origin
    )


async def test_a_services_docs_page_signs_a_customer_in_with_the_password_grant(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    customer = await bank.register_customer(http, "docs-password")
    origin = bank.url("transactions")
    assert await preflight_allows(http, bank, origin)
    assert not await preflight_allows(http, bank, "http://elsewhere.example")

    response = await http.post(
        f"{bank.url('accounts')}{TOKEN_PATH}",
        data={
            "grant_type": "password",
            "username": customer.email,
            "password": customer.password,
            "scope": "transfers:read",
            "client_id": DOCS_CLIENT_ID,
        },
        headers={"Origin": origin},
    )

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    listed = await http.get(
        f"{origin}{TRANSFERS_PATH}",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
    )
    assert listed.status_code == 200, listed.text


async def test_a_services_docs_page_signs_a_customer_in_with_the_code_flow_and_pkce(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    customer = await bank.register_customer(http, "docs-code")
    origin = bank.url("transactions")

    tokens = await signed_in_from_docs(bank, customer, origin)

    assert tokens["scope"] == "transfers:read"
    listed = await http.get(
        f"{origin}{TRANSFERS_PATH}", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert listed.status_code == 200, listed.text


async def signed_in_from_docs(bank: Bank, customer: Customer, origin: str) -> dict[str, str]:
    """What Swagger UI on `origin`'s /docs does: the sign-in page, its form, the code
    back at the page's redirect URI, the PKCE exchange from that origin."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    redirect_uri = f"{origin}{DOCS_REDIRECT_PATH}"
    query = {
        "response_type": "code",
        "client_id": DOCS_CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": "transfers:read",
        "state": "docs-system-test",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(base_url=bank.url("accounts"), timeout=10.0) as browser:
        page = await browser.get(AUTHORIZE_PATH, params=query)
        assert page.status_code == 200, page.text
        [csrf_token] = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)
        form = query | {"csrf_token": csrf_token}
        posted = await browser.post(
            AUTHORIZE_PATH, data=form | {"email": customer.email, "password": customer.password}
        )
        assert posted.status_code == 303, posted.text
        location = urlsplit(posted.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
        answer = parse_qs(location.query)
        assert answer["state"] == ["docs-system-test"]
        exchanged = await browser.post(
            TOKEN_PATH,
            data={
                "grant_type": "authorization_code",
                "code": answer["code"][0],
                "redirect_uri": redirect_uri,
                "client_id": DOCS_CLIENT_ID,
                "code_verifier": verifier,
            },
            headers={"Origin": origin},
        )
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.headers["access-control-allow-origin"] == origin
    tokens: dict[str, str] = exchanged.json()
    return tokens
