"""The console's small rules, without an app: cookie security by URL, the store's bounds,
money in words, a token's subject, and pages free of inline script and style (the CSP
would block them)."""

import re
from datetime import timedelta
from pathlib import Path

import pytest

from console.config import CookieSecure, Settings
from console.search import audit_filters, transfer_filters
from console.sessions import (
    SIGN_IN_TTL_SECONDS,
    SIGN_INS_PER_BROWSER_MAX,
    SessionStore,
    token_subject,
)
from console.tests.support import Clock
from contracts.auth import PrincipalKind, StaffRole, TokenResponse
from contracts.money import display_amount
from contracts.staff import StaffProfile
from kit.testing import TestIssuer

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
PROFILE = StaffProfile(
    id="6f1c2b1e-8f5a-4c39-9a51-0d3e2f7b9a10",
    email="a@example.com",
    display_name=None,
    role=StaffRole.auditor,
    scopes=[],
)
TOKENS = TokenResponse(access_token="a", expires_in=900, scope="audit:read")


@pytest.mark.parametrize(
    ("public_url", "setting", "secure"),
    [
        ("http://127.0.0.1:8005", CookieSecure.auto, False),
        ("http://localhost:8005", CookieSecure.auto, False),
        ("http://[::1]:8005", CookieSecure.auto, False),
        ("http://console.internal:8005", CookieSecure.auto, True),
        ("http://10.0.0.5:8005", CookieSecure.auto, True),
        ("https://console.bank.example", CookieSecure.auto, True),
        ("http://127.0.0.1:8005", CookieSecure.always, True),
        ("https://console.bank.example", CookieSecure.never, False),
    ],
)
def test_cookies_are_secure_but_on_a_loopback_over_http(
    public_url: str, setting: CookieSecure, secure: bool
) -> None:
    assert Settings(public_url=public_url, cookie_secure=setting).secure_cookies is secure


def test_a_lifetime_shorter_than_the_idle_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="lifetime"):
        Settings(session_idle_timeout_seconds=3600, session_lifetime_seconds=600)


def test_the_store_keeps_at_most_its_bound_dropping_the_oldest() -> None:
    store = SessionStore(
        clock=Clock(), idle_timeout_seconds=900, lifetime_seconds=3600, sessions_max=10
    )
    sessions = [store.create(TOKENS, PROFILE) for _ in range(11)]
    assert len(store) == 10
    assert store.find(sessions[0].id) is None
    assert store.find(sessions[-1].id) is sessions[-1]
    browsers = [store.begin_sign_in(None) for _ in range(11)]
    (first_key, first), (last_key, last) = browsers[0], browsers[-1]
    assert store.take_sign_in(first_key, first.state) is None
    assert store.take_sign_in(last_key, last.state) is last


def test_a_browser_keeps_a_few_sign_ins_dropping_the_oldest() -> None:
    """One per tab started, SIGN_INS_PER_BROWSER_MAX at most, each matched by its state."""
    store = SessionStore(
        clock=Clock(), idle_timeout_seconds=900, lifetime_seconds=3600, sessions_max=10
    )
    key, first = store.begin_sign_in(None)
    started = [first]
    for _ in range(SIGN_INS_PER_BROWSER_MAX):
        same_key, pending = store.begin_sign_in(key)
        assert same_key == key
        started.append(pending)
    assert store.pending_sign_ins(key) == tuple(started[1:])
    assert store.take_sign_in(key, first.state) is None
    assert store.take_sign_in(key, started[2].state) is started[2]
    assert store.take_sign_in(key, started[2].state) is None  # once
    assert store.take_sign_in(key, started[1].state) is started[1]


def test_a_browser_key_the_store_does_not_know_is_not_adopted() -> None:
    store = SessionStore(
        clock=Clock(), idle_timeout_seconds=900, lifetime_seconds=3600, sessions_max=10
    )
    key, _pending = store.begin_sign_in("chosen-by-someone")
    assert key != "chosen-by-someone"
    assert store.pending_sign_ins("chosen-by-someone") == ()


def test_a_state_is_matched_exactly_and_only_within_its_browser() -> None:
    store = SessionStore(
        clock=Clock(), idle_timeout_seconds=900, lifetime_seconds=3600, sessions_max=10
    )
    key, pending = store.begin_sign_in(None)
    other_key, other = store.begin_sign_in(None)
    for state in (None, "", pending.state[:-1], pending.state + "x", other.state):
        assert store.take_sign_in(key, state) is None
    assert store.take_sign_in(other_key, pending.state) is None
    assert store.take_sign_in(key, pending.state) is pending  # misses consumed nothing


def test_a_sign_in_expires() -> None:
    clock = Clock()
    store = SessionStore(
        clock=clock, idle_timeout_seconds=900, lifetime_seconds=3600, sessions_max=10
    )
    key, old = store.begin_sign_in(None)
    clock.now += timedelta(seconds=SIGN_IN_TTL_SECONDS - 1)
    _key, young = store.begin_sign_in(key)
    clock.now += timedelta(seconds=1)
    assert store.take_sign_in(key, old.state) is None
    assert store.take_sign_in(key, young.state) is young


def test_ids_and_secrets_are_unique_and_long() -> None:
    store = SessionStore(
        clock=Clock(), idle_timeout_seconds=900, lifetime_seconds=3600, sessions_max=10
    )
    first, second = store.create(TOKENS, PROFILE), store.create(TOKENS, PROFILE)
    assert len({first.id, second.id, first.csrf_token, second.csrf_token}) == 4
    assert min(len(first.id), len(first.csrf_token)) >= 43  # 32 bytes, base64url


@pytest.mark.parametrize(
    ("amount_minor", "currency", "shown"),
    [
        (1_000_000, "EUR", "10,000.00 EUR"),
        (5, "EUR", "0.05 EUR"),
        (-2550, "EUR", "-25.50 EUR"),
        (1234, "JPY", "1,234 JPY"),
        (1001, "BHD", "1.001 BHD"),
        (123456, "XTS", "123,456 (minor units) XTS"),
    ],
)
def test_money_in_minor_units(amount_minor: int, currency: str, shown: str) -> None:
    assert display_amount(amount_minor, currency) == shown


def test_a_tokens_subject() -> None:
    token = TestIssuer().token("staff:abc", PrincipalKind.operator, {"audit:read"})
    assert token_subject(token) == "staff:abc"
    assert token_subject("not-a-jwt") is None
    assert token_subject("a.!!!.c") is None


def test_dates_become_instants_and_typos_become_messages() -> None:
    filters = transfer_filters({"created_from": "2026-03-01", "created_to": "2026-03-31"})
    assert filters.params == {
        "created_after": "2026-03-01T00:00:00+00:00",
        "created_before": "2026-04-01T00:00:00+00:00",
    }
    assert audit_filters({"action": "Transfer Created", "since": "yesterday"}).errors == [
        "Action has characters an id never has.",
        "From is not a date (YYYY-MM-DD).",
    ]


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda path: path.name)
def test_no_template_holds_inline_script_or_style(template: Path) -> None:
    text = template.read_text()
    assert "<script" not in text
    assert "<style" not in text
    assert not re.search(r"\sstyle\s*=", text)
    assert not re.search(r"\son[a-z]+\s*=", text)  # onclick= and the like
    assert "javascript:" not in text


def test_every_form_that_posts_carries_the_csrf_token() -> None:
    for template in TEMPLATES.glob("*.html"):
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", template.read_text(), re.S):
            assert 'name="{{ csrf_field }}" value="{{ session.csrf_token }}"' in form, template
