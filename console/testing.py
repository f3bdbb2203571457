"""The tests' seam into sign-in: a session put straight into a console app's store, with
tokens the test got elsewhere (a test issuer's, or the bank's operator client). Until the
issuer serves the authorization code flow, no test can sign in through the browser."""

import uuid

from fastapi import FastAPI

from console.sessions import SessionStore, StaffSession
from console.web import SESSION_COOKIE, cookie_name
from contracts.auth import StaffRole, TokenResponse
from contracts.staff import StaffProfile


def store_of(app: FastAPI) -> SessionStore:
    store = app.state.session_store
    assert isinstance(store, SessionStore)
    return store


def session_for_tests(
    app: FastAPI,
    *,
    access_token: str,
    scopes: frozenset[str] | set[str],
    refresh_token: str | None = None,
    expires_in_seconds: int = 900,
    role: StaffRole = StaffRole.admin,
    email: str = "tester@example.com",
) -> StaffSession:
    """A signed-in session in `app`'s store, as the callback would have made it."""
    tokens = TokenResponse(
        access_token=access_token,
        refresh_token=refresh_token,
        expires_in=expires_in_seconds,
        scope=" ".join(sorted(scopes)),
    )
    profile = StaffProfile(
        id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
        email=email,
        display_name="Test Staff",
        role=role,
        scopes=sorted(scopes),
    )
    return store_of(app).create(tokens, profile)


def session_headers(session: StaffSession, *, secure: bool = False) -> dict[str, str]:
    """The Cookie header a browser holding `session` sends (to a console whose cookies are
    Secure, under the `__Host-` name)."""
    return {"Cookie": f"{cookie_name(SESSION_COOKIE, secure=secure)}={session.id}"}
