"""Signing staff in and out: the authorization code flow with PKCE against the issuer
(RFC 6749 4.1, RFC 7636), and sign-out revoking the session's refresh token (RFC 7009)."""

from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.issuer import IssuerRefused
from console.resources import ConsoleResources, Resources
from console.sessions import SIGN_IN_TTL_SECONDS
from console.web import (
    SESSION_COOKIE,
    SIGN_IN_BUCKET,
    SIGN_IN_COOKIE,
    SIGN_IN_PATH,
    CheckedForm,
    SignedIn,
    cookie_name,
    read_cookie,
    render,
    set_cookie,
)

log = structlog.get_logger()

CALLBACK_PATH: Final = "/auth/callback"
SIGN_OUT_PATH: Final = "/auth/sign-out"
SIGNED_OUT_PATH: Final = "/auth/signed-out"
_PARAMETER_LENGTH_MAX: Final = 2000

router = APIRouter(tags=["sign-in"])

CallbackParameter = Annotated[str | None, Query(max_length=_PARAMETER_LENGTH_MAX)]


@router.get(SIGN_IN_PATH, summary="Start signing in: off to the issuer's sign-in page")
async def sign_in(request: Request, resources: Resources) -> Response:
    # Counted per address before anything is kept (429 past the rate): behind a proxy,
    # CONSOLE_FORWARDED_ALLOW_IPS makes the address the browser's.
    address = request.client.host if request.client is not None else "unknown"
    await resources.limiter.hit(SIGN_IN_BUCKET, address)
    # Beside the browser's other sign-ins in flight: a second tab leaves the first's alone.
    key, pending = resources.store.begin_sign_in(read_cookie(request, resources, SIGN_IN_COOKIE))
    response = RedirectResponse(
        resources.issuer.authorize_url(state=pending.state, code_verifier=pending.code_verifier),
        status_code=303,
    )
    # Lax, not Strict: the issuer (often another site) sends the browser back to the
    # callback with a cross-site redirect, and a Strict cookie would stay behind. It holds
    # only the key of the browser's single-use, short-lived sign-ins, never a session.
    set_cookie(
        response,
        SIGN_IN_COOKIE,
        key,
        secure=resources.secure_cookies,
        same_site="lax",
        max_age_seconds=SIGN_IN_TTL_SECONDS,
    )
    return response


@router.get(CALLBACK_PATH, summary="The issuer's answer: exchange the code, open a session")
async def callback(
    request: Request,
    resources: Resources,
    code: CallbackParameter = None,
    state: CallbackParameter = None,
    error: CallbackParameter = None,
) -> Response:
    key = read_cookie(request, resources, SIGN_IN_COOKIE)
    if not resources.store.pending_sign_ins(key):
        return _refused(
            request, resources, key, "This sign-in has expired or was not started here."
        )
    pending = resources.store.take_sign_in(key, state)
    if pending is None:
        log.warning("console.sign_in_state_mismatch")
        return _refused(request, resources, key, "The sign-in's state did not match.")
    if error is not None:
        return _refused(request, resources, key, f"The issuer did not sign you in ({error}).")
    if code is None:
        return _refused(request, resources, key, "The issuer sent no authorization code.")
    try:
        tokens = await resources.issuer.exchange_code(
            code=code, code_verifier=pending.code_verifier
        )
        profile = await resources.issuer.profile(tokens.access_token)
    except IssuerRefused as refusal:
        log.warning("console.sign_in_refused", reason=str(refusal))
        return _refused(request, resources, key, "The issuer refused the sign-in.")
    session = resources.store.create(tokens, profile)
    log.info("console.signed_in", staff_id=str(profile.id), role=profile.role)
    # Not a redirect into a page: this request comes at the end of a navigation the issuer
    # (another site) started, so the browser would withhold the new SameSite=Strict cookie
    # from a page reached by redirect and show the sign-in again. The small page's own
    # navigation to "/" (a link, and a meta refresh, which the CSP allows) is same-site.
    response = render(request, resources, "signed_in.html", {}, session=None)
    set_cookie(
        response, SESSION_COOKIE, session.id, secure=resources.secure_cookies, same_site="strict"
    )
    _forget_sign_ins_if_done(response, resources, key)
    return response


@router.post(SIGN_OUT_PATH, summary="Sign out: revoke the refresh token, drop the session")
async def sign_out(session: SignedIn, _form: CheckedForm, resources: Resources) -> Response:
    resources.store.drop(session.id)
    if session.refresh_token is not None:
        try:
            await resources.issuer.revoke(session.refresh_token)
        except IssuerRefused as refusal:
            # The session is gone here either way; the token dies with its lifetime.
            log.warning("console.revocation_failed", reason=str(refusal))
    log.info("console.signed_out", staff_id=str(session.profile.id))
    response = RedirectResponse(SIGNED_OUT_PATH, status_code=303)
    _forget(response, resources, SESSION_COOKIE, same_site="strict")
    return response


@router.get(SIGNED_OUT_PATH, summary="You are signed out")
async def signed_out(request: Request, resources: Resources) -> HTMLResponse:
    return render(request, resources, "signed_out.html", {})


def _refused(
    request: Request, resources: ConsoleResources, key: str | None, reason: str
) -> HTMLResponse:
    response = render(
        request, resources, "sign_in_failed.html", {"reason": reason}, status_code=400
    )
    _forget_sign_ins_if_done(response, resources, key)
    return response


def _forget_sign_ins_if_done(
    response: Response, resources: ConsoleResources, key: str | None
) -> None:
    """The pre-session cookie goes once the browser has no sign-in left in flight (another
    tab's may still come back)."""
    if not resources.store.pending_sign_ins(key):
        _forget(response, resources, SIGN_IN_COOKIE, same_site="lax")


def _forget(response: Response, resources: ConsoleResources, name: str, *, same_site: str) -> None:
    response.delete_cookie(
        cookie_name(name, secure=resources.secure_cookies),
        path="/",
        secure=resources.secure_cookies,
        httponly=True,
        samesite=same_site,  # type: ignore[arg-type]
    )
