"""Each service's /docs in a real browser (Debian's chromium, driven by Playwright) on the
live bank as `sagabank up` runs it, with every request for another host refused as a
bank's offline network would: the page lists the service's operations, breaks none of its
Content-Security-Policy, and its Authorize obtains a token through the issuer's sign-in
page (the `sagabank-docs` client, PKCE) with which "Try it out" answers 200
(docs/decisions/0040, "Offline /docs")."""

from typing import Final
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.bank import SERVICES, Bank
from tests.test_console_browser import csp_violations

pytestmark = pytest.mark.system

LOCAL_HOST: Final = "127.0.0.1"


@pytest.fixture
async def offline(context: BrowserContext) -> list[str]:
    """Every request for a host other than the bank's is aborted, as it would fail without
    internet access; the URLs of those aborted, for the test to assert there were none."""
    aborted: list[str] = []

    async def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == LOCAL_HOST:
            await route.continue_()
        else:
            aborted.append(route.request.url)
            await route.abort()

    await context.route("**/*", local_only)
    return aborted


async def operation_ids(http: httpx.AsyncClient, bank: Bank, service: str) -> list[str]:
    document = (await http.get(f"{bank.url(service)}/openapi.json")).json()
    # The page lists the webhooks (notifications') beside the paths.
    described = [*document["paths"].values(), *document.get("webhooks", {}).values()]
    return [operation["operationId"] for by_method in described for operation in by_method.values()]


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_list_every_operation_offline_within_the_policy(
    bank: Bank, http: httpx.AsyncClient, context: BrowserContext, offline: list[str], service: str
) -> None:
    expected = await operation_ids(http, bank, service)
    page = await context.new_page()
    violations = csp_violations(page)

    await page.goto(f"{bank.url(service)}/docs")

    shown = page.locator(".opblock-summary-operation-id")
    await expect(shown.first).to_be_visible()
    # An operation with two tags is listed under each.
    assert set(await shown.all_inner_texts()) == set(expected)
    if service == "transactions":
        await expect(shown.filter(has_text="createTransfer").first).to_be_visible()
    assert offline == []
    assert violations == []


async def authorize_with_the_sign_in_page(
    page: Page, context: BrowserContext, email: str, password: str
) -> None:
    """Authorize's code flow: one scope ticked, the issuer's sign-in page in the popup."""
    await page.get_by_role("button", name="Authorize").first.click()
    code_flow = page.locator(".auth-container").filter(has_text="authorizationCode with PKCE")
    await code_flow.locator("label[for^='transfers:read-authorizationCode']").click()
    async with context.expect_page() as popup_opening:
        await code_flow.locator("button.authorize").click()
    popup = await popup_opening.value
    # The redirect page runs in the popup, after the issuer's: its policy is checked there.
    popup_violations = csp_violations(popup)
    await popup.get_by_label("Email").fill(email)
    await popup.get_by_label("Password").fill(password)
    async with popup.expect_event("close"):
        await popup.get_by_role("button", name="Sign in").click()
    assert popup_violations == []
    await expect(code_flow.locator("button", has_text="Logout")).to_be_visible()
    await code_flow.locator("button.btn-done").click()


async def test_authorize_obtains_a_token_that_try_it_out_uses(
    bank: Bank, http: httpx.AsyncClient, context: BrowserContext, offline: list[str]
) -> None:
    customer = await bank.register_customer(http, "docs-browser")
    page = await context.new_page()
    violations = csp_violations(page)
    await page.goto(f"{bank.url('transactions')}/docs")

    await authorize_with_the_sign_in_page(page, context, customer.email, customer.password)
    operation = page.locator("[id$='-listTransfers']").first
    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.get_by_role("button", name="Execute").click()

    status = operation.locator(".live-responses-table .response .response-col_status")
    await expect(status).to_have_text("200")
    assert offline == []
    assert violations == []
