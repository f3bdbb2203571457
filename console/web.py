"""What every page shares: the session a request belongs to (renewing its access token when
due), the CSRF check of every form, the cookies, and rendering."""

import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Final

import structlog
from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse

from console.issuer import IssuerRefused
from console.resources import ConsoleResources, Resources
from console.sessions import StaffSession

log = structlog.get_logger()

SESSION_COOKIE: Final = "sagabank_console_session"
SIGN_IN_COOKIE: Final = "sagabank_console_sign_in"
# Secure cookies carry this prefix: a browser then keeps one only if it is Secure, Path=/,
# without Domain and set by this very host, so a sibling subdomain can neither plant nor
# overwrite it (RFC 6265bis, 4.1.3.2). Browsers refuse the prefix on a cookie without
# Secure, so on plain http on a loopback host (the local stack) the bare names stay.
HOST_PREFIX: Final = "__Host-"
SIGN_IN_PATH: Final = "/auth/sign-in"
CSRF_FIELD: Final = "csrf_token"
# The rate-limit bucket of sign-in starts (CONSOLE_RATE_LIMIT_SIGN_IN), per address.
SIGN_IN_BUCKET: Final = "sign_in"
# An access token with less than this left is renewed before it is used.
RENEW_BEFORE: Final = timedelta(seconds=60)
FORM_FIELD_LENGTH_MAX: Final = 2000


class SignInRequired(Exception):
    """No live session: the browser is sent to sign in."""


class CsrfRefused(Exception):
    """A form without this session's CSRF token: refused, nothing done."""


def cookie_name(name: str, *, secure: bool) -> str:
    """The name a console cookie is set and read under: `__Host-` prefixed when Secure."""
    return f"{HOST_PREFIX}{name}" if secure else name


def read_cookie(request: Request, resources: ConsoleResources, name: str) -> str | None:
    return request.cookies.get(cookie_name(name, secure=resources.secure_cookies))


async def signed_in(request: Request, resources: Resources) -> StaffSession:
    session = resources.store.find(read_cookie(request, resources, SESSION_COOKIE))
    if session is None:
        raise SignInRequired
    await _renew_if_due(session, resources)
    return session


SignedIn = Annotated[StaffSession, Depends(signed_in)]


async def _renew_if_due(session: StaffSession, resources: ConsoleResources) -> None:
    if session.access_expires_at - resources.clock() > RENEW_BEFORE:
        return
    async with session.renewal:
        # Another request may have renewed while this one waited for the lock.
        if session.access_expires_at - resources.clock() > RENEW_BEFORE:
            return
        try:
            if session.refresh_token is None:
                raise IssuerRefused("no refresh token")
            tokens = await resources.issuer.renew(session.refresh_token)
        except IssuerRefused as error:
            log.info("console.session_renewal_refused", reason=str(error))
            resources.store.drop(session.id)
            raise SignInRequired from error
        session.take_tokens(tokens, now=resources.clock())


async def checked_form(request: Request, session: SignedIn) -> dict[str, str]:
    """The form's text fields, once its CSRF token is this session's (compared in constant
    time); CsrfRefused otherwise."""
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    if not isinstance(submitted, str) or not hmac.compare_digest(
        submitted.encode(), session.csrf_token.encode()
    ):
        log.warning("console.csrf_refused", path=request.url.path)
        raise CsrfRefused
    return {
        name: value[:FORM_FIELD_LENGTH_MAX]
        for name, value in form.items()
        if isinstance(value, str) and name != CSRF_FIELD
    }


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


def set_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    secure: bool,
    same_site: str,
    max_age_seconds: int | None = None,
) -> None:
    """HttpOnly, Path=/, no Domain; `Secure` and `__Host-` prefixed outside the local stack
    (the settings decide)."""
    response.set_cookie(
        cookie_name(name, secure=secure),
        value,
        max_age=max_age_seconds,
        path="/",
        secure=secure,
        httponly=True,
        samesite=same_site,  # type: ignore[arg-type]
    )


def render(
    request: Request,
    resources: ConsoleResources,
    template: str,
    context: Mapping[str, Any],
    *,
    session: StaffSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return resources.templates.TemplateResponse(
        request,
        template,
        {**context, "session": session, "csrf_field": CSRF_FIELD},
        status_code=status_code,
    )
