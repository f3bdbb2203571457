"""The operator console in a real browser (Debian's chromium, driven by Playwright), on the
live bank as `sagabank up` runs it: staff sign in at the real issuer with a password and a
TOTP code, through the authorization code flow with PKCE, and act with their own tokens.

Screenshots of the pages are written where `SAGABANK_CONSOLE_SCREENSHOTS` points (the
docs/console/ pictures are made that way: README, "Console"), else to the test's own
temporary directory.
"""

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pyotp
import pytest
from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    expect,
)

from contracts.auth import StaffRole
from contracts.staff import STAFF_PATH
from tests.bank import CONSOLE, Bank, Customer
from tests.browser import NARROW_VIEWPORT
from tests.flows import funded_pair, request_transfer, wait_for_status

pytestmark = pytest.mark.system

SCREENSHOTS_SETTING: Final = "SAGABANK_CONSOLE_SCREENSHOTS"
SESSION_COOKIE: Final = "sagabank_console_session"
# 10,000 EUR from a brand-new account: the default ruleset sends it to review (650 points).
REVIEWED_AMOUNT_MINOR: Final = 1_000_000
CONSOLE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class StaffMember:
    email: str
    password: str
    totp: pyotp.TOTP


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    configured = os.environ.get(SCREENSHOTS_SETTING)
    directory = Path(configured) if configured else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def add_staff(http: httpx.AsyncClient, bank: Bank, role: StaffRole) -> StaffMember:
    """A new member, added as `sagabank staff add` does, with their authenticator's secret."""
    email = f"{role.value}-{uuid.uuid4().hex[:8]}@bank.example"
    password = f"correct horse {uuid.uuid4().hex[:12]}"
    response = await http.post(
        f"{bank.url('accounts')}{STAFF_PATH}",
        json={"email": email, "role": role.value, "password": password},
        headers=await bank.operator_headers(http),
    )
    assert response.status_code == 201, response.text
    totp = pyotp.parse_uri(response.json()["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    return StaffMember(email=email, password=password, totp=totp)


def csp_violations(page: Page) -> list[str]:
    """What chromium reports of the page breaking its Content-Security-Policy, as it happens."""
    violations: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", record)
    return violations


async def sign_in(
    page: Page, bank: Bank, member: StaffMember, *, screenshot: Path | None = None
) -> Response:
    """Open the console, get sent to the issuer's sign-in page, sign in; the issuer's page's
    own response is answered for its headers."""
    async with page.expect_response(re.compile(r"/v1/oauth/authorize\?")) as sign_in_page:
        await page.goto(f"{bank.url(CONSOLE)}/transfers")
    if screenshot is not None:
        await page.screenshot(path=screenshot, full_page=True)
    await page.get_by_label("Email").fill(member.email)
    await page.get_by_label("Password").fill(member.password)
    await page.get_by_label("Authentication code").fill(member.totp.now())
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{bank.url(CONSOLE)}/transfers**")
    return await sign_in_page.value


async def transfer_in_review(http: httpx.AsyncClient, bank: Bank) -> tuple[Customer, str]:
    """10,000 EUR from a new account, waiting in the review queue; and who sent it."""
    payer, source, _, target = await funded_pair(http, bank, REVIEWED_AMOUNT_MINOR * 2)
    transfer_id = await request_transfer(http, bank, payer, source, target, REVIEWED_AMOUNT_MINOR)
    transfer = await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
    assert transfer["status"] == "in_review", transfer
    return payer, transfer_id


class TestAReviewer:
    async def test_signs_in_approves_a_large_transfer_and_sees_it_complete(
        self, bank: Bank, http: httpx.AsyncClient, context: BrowserContext, screenshots: Path
    ) -> None:
        reviewer = await add_staff(http, bank, StaffRole.reviewer)
        payer, transfer_id = await transfer_in_review(http, bank)
        page = await context.new_page()
        violations = csp_violations(page)

        await sign_in(page, bank, reviewer)
        await expect(page.get_by_text(f"Signed in as {reviewer.email} (reviewer)")).to_be_visible()
        await page.get_by_role("link", name="Review queue").click()
        row = page.get_by_role("row").filter(has_text=transfer_id)
        await expect(row).to_contain_text("10,000.00 EUR")
        await page.screenshot(path=screenshots / "review-queue.png", full_page=True)

        await row.get_by_role("link", name=transfer_id).click()
        await page.get_by_label("Note").fill("Checked with the customer by phone")
        await page.get_by_role("button", name="Approve").click()
        await expect(page.get_by_role("status")).to_contain_text("approve")

        completed = await wait_for_status(http, bank, payer, transfer_id, {"completed"})
        assert completed["status"] == "completed", completed
        await page.reload()
        facts = page.locator("dl.facts")
        await expect(facts).to_contain_text("completed")
        timeline = page.locator("ol.timeline li")
        # The reviewer named in the timeline is the person signed in, with their note.
        approval = timeline.filter(has_text="review: approved")
        await expect(approval).to_contain_text("reviewer staff:")
        await expect(approval).to_contain_text("Checked with the customer by phone")
        await expect(timeline.filter(has_text="post:")).to_have_count(1)
        await page.screenshot(path=screenshots / "transfer.png", full_page=True)
        assert violations == []


class TestAnAuditor:
    async def test_is_not_offered_approval_and_a_forged_one_is_refused(
        self, bank: Bank, http: httpx.AsyncClient, context: BrowserContext, screenshots: Path
    ) -> None:
        auditor = await add_staff(http, bank, StaffRole.auditor)
        payer, transfer_id = await transfer_in_review(http, bank)
        page = await context.new_page()
        await sign_in(page, bank, auditor)

        navigation = page.get_by_role("navigation", name="Main")
        await expect(navigation.get_by_role("link", name="Review queue")).to_have_count(0)
        await navigation.get_by_role("link", name="Audit").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Audit")
        await page.screenshot(path=screenshots / "audit.png")

        await page.goto(f"{bank.url(CONSOLE)}/transfers/{transfer_id}")
        await expect(page.locator("dl.facts")).to_contain_text("in review")
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        # What a crafted page could send on the auditor's behalf, with their own CSRF token:
        # the console passes it on and transactions refuses it (no reviews:write).
        csrf_token = await page.locator("input[name=csrf_token]").first.input_value()
        forged = await page.request.post(
            f"{bank.url(CONSOLE)}/reviews/{transfer_id}",
            form={"csrf_token": csrf_token, "decision": "approve", "note": "forged"},
            max_redirects=0,
        )
        assert forged.status == 403, await forged.text()
        transfer = await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
        assert transfer["status"] == "in_review"


class TestSafeAndPlain:
    async def test_headers_cookie_flags_keyboard_narrow_window_and_sign_out(
        self, bank: Bank, http: httpx.AsyncClient, context: BrowserContext, screenshots: Path
    ) -> None:
        admin = await add_staff(http, bank, StaffRole.admin)
        page = await context.new_page()
        violations = csp_violations(page)
        issuer_page = await sign_in(page, bank, admin, screenshot=screenshots / "sign-in.png")
        issuer_policy = issuer_page.headers["content-security-policy"]
        assert "default-src 'none'" in issuer_policy
        assert "frame-ancestors 'none'" in issuer_policy
        assert "'unsafe-inline'" not in issuer_policy

        console_page = await page.goto(f"{bank.url(CONSOLE)}/transfers")
        assert console_page is not None
        assert console_page.headers["content-security-policy"] == CONSOLE_POLICY
        assert console_page.headers["x-content-type-options"] == "nosniff"
        assert console_page.headers["referrer-policy"] == "no-referrer"
        assert "no-store" in console_page.headers["cache-control"]
        cookies = {cookie["name"]: cookie for cookie in await context.cookies()}
        session = cookies[SESSION_COOKIE]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        # Plain http on a loopback address: a Secure cookie would never come back.
        assert session["secure"] is False
        assert SESSION_COOKIE not in await page.evaluate("document.cookie")
        await page.screenshot(path=screenshots / "transfers.png", full_page=True)

        # The first Tab reaches the skip link, and following it puts focus on the page's main.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("main")).to_be_focused()

        await page.set_viewport_size(NARROW_VIEWPORT)  # type: ignore[arg-type]
        await page.reload()
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a narrow window"
        await page.screenshot(path=screenshots / "transfers-narrow.png", full_page=True)
        assert violations == []

        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Signed out")
        assert SESSION_COOKIE not in {cookie["name"] for cookie in await context.cookies()}
        await page.goto(f"{bank.url(CONSOLE)}/transfers")
        await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
