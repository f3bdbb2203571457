"""The public edge of the issuer: the JWKS, the token endpoint and customer registration.

These are the only routes of the service that take no bearer token.
"""

from typing import Any, Final

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from accounts.identity import codes, rules, service
from accounts.identity.errors import (
    CustomerExists,
    OAuthInvalidClient,
    OAuthInvalidGrant,
    OAuthInvalidRequest,
    OAuthInvalidScope,
    OAuthUnsupportedGrantType,
    PasswordHashingBusy,
)
from accounts.identity.resources import Resources
from accounts.identity.rules import Customer, CustomerCreate, GrantType, Jwks
from accounts.identity.staff_api import router as staff_router
from contracts.auth import CUSTOMERS_PATH, JWKS_PATH, TOKEN_PATH, TokenResponse
from kit.audit import request_id_of
from kit.db import ServiceDatabase, Session
from kit.errors import InvalidRequest, TooManyRequests
from kit.params import Now
from kit.problems import problem_responses
from kit.ratelimit import TOKEN_BUCKET, limiter_of

_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_FORM_FIELDS_MAX: Final = 20

router = APIRouter()
# The admin routes for staff (`sagabank staff`), served with the issuer's own.
router.include_router(staff_router)


def client_address(request: Request) -> str:
    """The caller's address, as rate limits and the login throttle count it."""
    # The peer address: behind a proxy, ACCOUNTS_FORWARDED_ALLOW_IPS makes `sagabank
    # serve` take it from the proxy's X-Forwarded-For, so that it is the caller's.
    return request.client.host if request.client is not None else "unknown"


async def form_fields(request: Request) -> dict[str, list[str]]:
    """The OAuth endpoints' form (RFC 6749 wants form encoding), each field with all its
    values; invalid_request for any other body."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != _FORM_CONTENT_TYPE:
        raise OAuthInvalidRequest(f"send the parameters as {_FORM_CONTENT_TYPE}")
    form = await request.form(max_files=0, max_fields=_FORM_FIELDS_MAX)
    return {
        name: [value for value in form.getlist(name) if isinstance(value, str)] for name in form
    }


@router.get(
    JWKS_PATH,
    tags=["identity"],
    summary="The public keys that verify this issuer's tokens (RFC 7517)",
)
async def get_jwks(resources: Resources) -> Jwks:
    return Jwks.model_validate(resources.issuer.keys.jwks())


_TOKEN_FORM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": [grant.value for grant in GrantType]},
        "username": {"type": "string", "maxLength": rules.USERNAME_LENGTH_MAX},
        "password": {"type": "string", "format": "password"},
        "refresh_token": {"type": "string"},
        "scope": {"type": "string", "description": "space-separated scopes"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "format": "password"},
        "code": {"type": "string", "maxLength": rules.AUTHORIZATION_CODE_LENGTH_MAX},
        "redirect_uri": {"type": "string", "maxLength": rules.REDIRECT_URI_LENGTH_MAX},
        "code_verifier": {
            "type": "string",
            "minLength": rules.PKCE_LENGTH_MIN,
            "maxLength": rules.PKCE_LENGTH_MAX,
        },
    },
}


@router.post(
    TOKEN_PATH,
    tags=["identity"],
    summary=(
        "OAuth2 token endpoint: authorization_code (with PKCE), refresh_token, "
        "client_credentials and password grants"
    ),
    description=(
        "Form-encoded (RFC 6749). `password`: `username` (the customer's email) and "
        "`password`, optional `scope` within the customer scopes; answers an access token "
        "and a refresh token. `refresh_token`: rotates the refresh token (a used one "
        "presented again revokes its whole family; a public client may name itself with "
        "`client_id`). `client_credentials`: the client authenticates with HTTP Basic or "
        "`client_id`/`client_secret`. `authorization_code`: `code`, `redirect_uri` and "
        "`client_id` as in the authorization request, and the PKCE `code_verifier`; a "
        "code is used once. Errors carry the RFC 6749 code in `error`. Where "
        "`ACCOUNTS_PASSWORD_GRANT_ENABLED` is false (as in compose.yaml and deploy/k8s), "
        "`password` is `unsupported_grant_type`."
    ),
    response_model=TokenResponse,
    responses=problem_responses(
        OAuthInvalidRequest,
        OAuthInvalidClient,
        OAuthInvalidGrant,
        OAuthUnsupportedGrantType,
        OAuthInvalidScope,
        TooManyRequests,
        PasswordHashingBusy,
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_FORM_CONTENT_TYPE: {"schema": _TOKEN_FORM_SCHEMA}},
        }
    },
)
async def issue_token(
    request: Request, resources: Resources, database: ServiceDatabase, now: Now
) -> JSONResponse:
    fields = await form_fields(request)
    parsed = rules.parse_token_request(fields, authorization=request.headers.get("authorization"))
    limiter = limiter_of(request)
    sessions, issuer = database.sessions, resources.issuer
    service.refuse_unserved_grant(issuer, parsed.grant_type)
    if parsed.grant_type is GrantType.password:
        assert parsed.username is not None, "the parser requires a username"
        address = client_address(request)
        username = rules.normalized_email(parsed.username)
        await limiter.hit(TOKEN_BUCKET, service.login_key(username, address))
        answer = await service.password_grant(
            sessions, issuer, request=parsed, client_address=address, now=now
        )
    elif parsed.grant_type is GrantType.refresh_token:
        await limiter.hit(TOKEN_BUCKET, f"refresh:{client_address(request)}")
        answer = await service.refresh_grant(sessions, issuer, request=parsed, now=now)
    elif parsed.grant_type is GrantType.authorization_code:
        await limiter.hit(TOKEN_BUCKET, f"code:{client_address(request)}")
        answer = await codes.authorization_code_grant(sessions, issuer, request=parsed, now=now)
    else:
        assert parsed.client is not None, "the parser requires client credentials"
        await limiter.hit(TOKEN_BUCKET, f"client:{parsed.client.client_id}")
        answer = await service.client_credentials_grant(sessions, issuer, request=parsed, now=now)
    # RFC 6749 5.1: never cached. The service shell sends `Cache-Control: no-store` on
    # every response already; Pragma is for HTTP/1.0 caches.
    return JSONResponse(answer.model_dump(exclude_none=True), headers={"Pragma": "no-cache"})


@router.post(
    CUSTOMERS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["identity"],
    summary="Register a customer (email and password); then ask for a token",
    responses=problem_responses(
        InvalidRequest, CustomerExists, TooManyRequests, PasswordHashingBusy
    ),
)
async def register_customer(
    request: Request, body: CustomerCreate, session: Session, resources: Resources, now: Now
) -> Customer:
    await limiter_of(request).hit(TOKEN_BUCKET, f"register:{client_address(request)}")
    return await service.register_customer(
        session, resources.issuer, request=body, request_id=request_id_of(request), now=now
    )
