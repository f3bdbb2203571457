"""The authorization endpoint (RFC 6749 4.1 with PKCE, RFC 7636) and its sign-in page.

`GET` checks the request and renders the page (email, password, and a TOTP code when the
client signs in staff); `POST` checks the page's CSRF token and the credentials, then
sends the browser to the client's redirect URI with a code and the state. A failed
sign-in answers the same page with the same message; it never redirects.
"""

import functools
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from importlib.resources import files
from typing import Any, Final

import jinja2
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from accounts.identity import codes, repository, rules, service, staff
from accounts.identity.api import client_address
from accounts.identity.authorize import (
    AuthorizationRefused,
    AuthorizationRequest,
    ClientRefused,
    PublicClient,
    check_redirect_uri,
    client_reference,
    parse_authorization_request,
    redirect_location,
    sign_in_policy,
)
from accounts.identity.errors import OAuthInvalidGrant, StaffSecretsNotConfigured
from accounts.identity.resources import IdentityResources, Resources
from accounts.identity.service import SessionMaker
from contracts.auth import AUTHORIZE_PATH, Scope
from kit.db import ServiceDatabase
from kit.errors import ProblemError
from kit.params import Now
from kit.ratelimit import TOKEN_BUCKET, limiter_of

SIGN_IN_STYLESHEET_PATH: Final = "/v1/oauth/sign-in.css"
CSRF_COOKIE: Final = "sagabank_sign_in_csrf"
CSRF_FIELD: Final = "csrf_token"
# Long enough to fill a sign-in in; the page's token is reused while the cookie lives, so
# two open sign-in tabs do not invalidate each other.
CSRF_COOKIE_MAX_AGE_SECONDS: Final = 3600
_CSRF_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_FORM_FIELDS_MAX: Final = 20
_CREDENTIAL_LIMITS: Final = {"email": rules.USERNAME_LENGTH_MAX, "password": 256, "totp": 10}
_REQUEST_FIELDS: Final = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
CUSTOMER_REFUSED: Final = "The email or the password is wrong."
STAFF_REFUSED: Final = "The email, the password or the code is wrong."
CSRF_REFUSED: Final = (
    "This sign-in form expired or was not sent from this page. Reload the page and try again."
)

router = APIRouter(tags=["identity"])
_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("accounts.identity", "templates"),
    # Every value is escaped: the state, the client id and the email come from the request.
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_STYLESHEET: Final = files("accounts.identity").joinpath("static/sign-in.css").read_bytes()


def _html(template: str, *, status: int, redirect_uri: str | None, **context: Any) -> Response:
    """A page of the issuer with the headers a sign-in page needs (decision 0037)."""
    html = _templates.get_template(template).render(stylesheet=SIGN_IN_STYLESHEET_PATH, **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = sign_in_policy(redirect_uri)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(message: str, *, status: int = 400) -> Response:
    heading = "Sign-in form expired" if status == 403 else "Cannot sign in"
    return _html("error.html", status=status, redirect_uri=None, heading=heading, message=message)


def _sign_in_page(
    request: Request,
    authorization: AuthorizationRequest,
    *,
    csrf_token: str,
    status: int = 200,
    email: str = "",
    message: str | None = None,
) -> Response:
    """The sign-in form, carrying the authorization request in hidden fields (checked
    again when it comes back) and the CSRF token whose twin the cookie holds."""
    hidden = [
        ("response_type", "code"),
        ("client_id", authorization.client.client_id),
        ("redirect_uri", authorization.redirect_uri),
        ("scope", rules.scope_text(authorization.offered_scopes)),
        ("code_challenge", authorization.code_challenge),
        ("code_challenge_method", "S256"),
    ]
    if authorization.state is not None:
        hidden.append(("state", authorization.state))
    response = _html(
        "sign_in.html",
        status=status,
        redirect_uri=authorization.redirect_uri,
        action=AUTHORIZE_PATH,
        client_id=authorization.client.client_id,
        staff=authorization.client.signs_in_staff,
        hidden=hidden,
        csrf_token=csrf_token,
        email=email,
        message=message,
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf_token,
        max_age=CSRF_COOKIE_MAX_AGE_SECONDS,
        path=AUTHORIZE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


def _redirect(location: str) -> Response:
    # 303: the browser follows a form post's answer with a GET (RFC 9110 15.4.4).
    return RedirectResponse(location, status_code=303)


async def _public_client(sessions: SessionMaker, client_id: str) -> PublicClient | None:
    async with sessions() as session, session.begin():
        row = await repository.get_client(session, client_id)
    if row is None or row.kind != "public" or row.disabled_at is not None:
        return None
    return PublicClient(
        client_id=row.client_id,
        redirect_uris=tuple(row.redirect_uris),
        scopes=frozenset(Scope(name) for name in row.scopes),
        signs_in=row.signs_in,
    )


async def _checked_client(
    sessions: SessionMaker, params: Mapping[str, list[str]]
) -> tuple[PublicClient, str]:
    """The request's public client and its redirect URI, registered; else ClientRefused."""
    client_id, redirect_uri = client_reference(params)
    return check_redirect_uri(await _public_client(sessions, client_id), redirect_uri), redirect_uri


@router.get(
    AUTHORIZE_PATH,
    summary="Authorization endpoint (code flow with PKCE S256): the sign-in page",
    description=(
        "Query: `response_type=code`, `client_id` (a public client), `redirect_uri` (one "
        "of its registered URIs, exactly; one registered as `http://127.0.0.1/...` or "
        "`http://[::1]/...`, without a port, on any port: RFC 8252 7.3), `scope`, "
        "`state`, `code_challenge` and "
        "`code_challenge_method=S256`. A bad client or redirect URI gets an error page; "
        "other errors go back to the redirect URI with `error` and the `state`."
    ),
    response_class=HTMLResponse,
    responses={303: {"description": "An error, sent back to the client's redirect URI"}},
)
async def authorize(request: Request, database: ServiceDatabase) -> Response:
    params = {name: request.query_params.getlist(name) for name in request.query_params}
    try:
        client, redirect_uri = await _checked_client(database.sessions, params)
    except ClientRefused as refused:
        return _error_page(f"The request is not valid: {refused.description}.")
    try:
        authorization = parse_authorization_request(
            params, client=client, redirect_uri=redirect_uri
        )
    except AuthorizationRefused as refused:
        return _redirect(refused.location)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    csrf_token = cookie if _CSRF_TOKEN.fullmatch(cookie) else secrets.token_urlsafe(32)
    return _sign_in_page(request, authorization, csrf_token=csrf_token)


@router.get(SIGN_IN_STYLESHEET_PATH, summary="The sign-in page's stylesheet")
async def sign_in_stylesheet() -> Response:
    # Cached a day: it changes with a release, and the page links it by this path only.
    headers = {"Cache-Control": "public, max-age=86400"}
    return Response(_STYLESHEET, media_type="text/css", headers=headers)


def _csrf_matches(request: Request, params: Mapping[str, list[str]]) -> bool:
    """The double submit: the form's token equals the cookie's, which only a page of
    this origin could have read into the form."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    submitted = params.get(CSRF_FIELD, [])
    if len(submitted) != 1 or not _CSRF_TOKEN.fullmatch(cookie):
        return False
    return hmac.compare_digest(submitted[0].encode(), cookie.encode())


def _credential(params: Mapping[str, list[str]], name: str) -> str:
    """A credential field's one value, or "" (absent, repeated or too long)."""
    values = params.get(name, [])
    if len(values) != 1 or len(values[0]) > _CREDENTIAL_LIMITS[name]:
        return ""
    return values[0].strip() if name != "password" else values[0]


async def _sign_in(
    request: Request,
    resources: IdentityResources,
    database: ServiceDatabase,
    authorization: AuthorizationRequest,
    params: Mapping[str, list[str]],
    now: datetime,
) -> tuple[codes.SignedIn, frozenset[Scope]]:
    """Who the credentials are and what they may be given of the offered scopes;
    OAuthInvalidGrant for any failure, another ProblemError when throttled or busy."""
    email, password = _credential(params, "email"), _credential(params, "password")
    totp = _credential(params, "totp")
    staff_client = authorization.client.signs_in_staff
    if not email or not password or (staff_client and not totp):
        raise OAuthInvalidGrant("a credential is missing")
    address = client_address(request)
    name = rules.normalized_email(email)
    limiter_key = service.login_key(f"staff:{name}" if staff_client else name, address)
    await limiter_of(request).hit(TOKEN_BUCKET, limiter_key)
    if not staff_client:
        customer = await service.authenticate_customer(
            database.sessions,
            resources.issuer,
            email=email,
            password=password,
            client_address=address,
        )
        return codes.SignedIn(customer_id=customer.id), authorization.offered_scopes
    if resources.staff_key_ring is None:
        raise StaffSecretsNotConfigured("set ACCOUNTS_SECRETS_KEYS to sign staff in")
    member = await staff.authenticate_staff(
        database.sessions,
        resources.issuer,
        resources.staff_key_ring,
        email=email,
        password=password,
        totp_code=totp,
        client_address=address,
        now=now,
    )
    return codes.SignedIn(staff_id=member.id), authorization.offered_scopes & member.scopes


@router.post(
    AUTHORIZE_PATH,
    summary="The sign-in form's post: a code for the client, or the form again",
    description=(
        "Form-encoded: the authorization request's parameters, `csrf_token`, `email`, "
        "`password` and (staff) `totp`. Answers 303 to the redirect URI with `code` and "
        "`state`, or the sign-in page again (401 wrong credentials, 429 throttled)."
    ),
    response_class=HTMLResponse,
    responses={303: {"description": "Signed in: to the client's redirect URI with a code"}},
)
async def sign_in(
    request: Request, resources: Resources, database: ServiceDatabase, now: Now
) -> Response:
    form = await request.form(max_files=0, max_fields=_FORM_FIELDS_MAX)
    params = {name: [item for item in form.getlist(name) if isinstance(item, str)] for name in form}
    try:
        client, redirect_uri = await _checked_client(database.sessions, params)
    except ClientRefused as refused:
        return _error_page(f"The request is not valid: {refused.description}.")
    # Before anything else is looked at: a post from another site signs no one in.
    if not _csrf_matches(request, params):
        return _error_page(CSRF_REFUSED, status=403)
    try:
        authorization = parse_authorization_request(
            params, client=client, redirect_uri=redirect_uri
        )
    except AuthorizationRefused as refused:
        return _redirect(refused.location)
    again = functools.partial(
        _sign_in_page,
        request,
        authorization,
        csrf_token=params[CSRF_FIELD][0],
        email=_credential(params, "email"),
    )
    try:
        signed_in, scopes = await _sign_in(request, resources, database, authorization, params, now)
    except OAuthInvalidGrant:
        # One message whatever failed: the page tells no account apart.
        message = STAFF_REFUSED if client.signs_in_staff else CUSTOMER_REFUSED
        return again(status=401, message=message)
    except ProblemError as error:  # throttled (429), hashing busy or not configured (503)
        page = again(status=error.status, message=f"{error.title}. {error.detail or ''}".strip())
        page.headers.update(error.headers)
        return page
    if not scopes:
        return _redirect(
            AuthorizationRefused(
                "invalid_scope",
                "you may hold none of the scopes asked for",
                redirect_uri=redirect_uri,
                state=authorization.state,
            ).location
        )
    code = await codes.issue_code(
        database.sessions,
        resources.issuer,
        request=authorization,
        signed_in=signed_in,
        scopes=scopes,
        now=now,
    )
    return _redirect(redirect_location(redirect_uri, {"code": code}, state=authorization.state))
