"""RFC 7009 token revocation: a refresh token shown here is revoked with its whole family.

Whoever holds a refresh token may revoke it: possession is the proof (the password grant
binds refresh tokens to no client, so there is no client to authenticate). Access tokens
are signed JWTs that no service looks up, so they are not revocable; they expire within
their short lifetime. An unknown token is no error (RFC 7009 2.2): the caller's aim is met.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import structlog
from fastapi import APIRouter, Request, Response

from accounts.identity import repository, rules
from accounts.identity.api import client_address, form_fields
from accounts.identity.errors import OAuthInvalidRequest
from accounts.identity.service import SessionMaker
from contracts.auth import REVOCATION_PATH
from kit.db import ServiceDatabase
from kit.errors import TooManyRequests
from kit.params import Now
from kit.problems import problem_responses
from kit.ratelimit import TOKEN_BUCKET, limiter_of

log = structlog.get_logger()

# An access token (a JWT) may be shown too; it must fit, though it is never looked up.
TOKEN_LENGTH_MAX: Final = 4096
TOKEN_TYPE_HINT_LENGTH_MAX: Final = 100
_FIELD_LIMITS: Final = {"token": TOKEN_LENGTH_MAX, "token_type_hint": TOKEN_TYPE_HINT_LENGTH_MAX}

router = APIRouter()


def parse_revocation_request(form: Mapping[str, list[str]]) -> str:
    """The token a revocation form names, or invalid_request. The hint is checked for
    shape only: every kind of token is searched whatever it says (RFC 7009 2.1)."""
    token = rules.single_fields(form, _FIELD_LIMITS).get("token")
    if not token:
        raise OAuthInvalidRequest("token is required")
    return token


async def revoke_token(sessions: SessionMaker, token: str, *, now: datetime) -> int:
    """Revoke the refresh token family `token` belongs to, if it is a refresh token we
    issued; how many tokens were revoked now (0 when unknown or revoked before)."""
    async with sessions() as session, session.begin():
        row = await repository.lock_refresh_token(session, rules.token_hash(token))
        if row is None:
            return 0
        revoked = await repository.revoke_refresh_family(session, row.family_id, now=now)
    log.info(
        "token.revoked",
        family_id=str(row.family_id),
        subject=str(row.staff_id or row.customer_id),
        revoked=revoked,
    )
    return revoked


_REVOCATION_FORM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["token"],
    "properties": {
        "token": {"type": "string", "maxLength": TOKEN_LENGTH_MAX},
        "token_type_hint": {"type": "string", "enum": ["refresh_token", "access_token"]},
    },
}


@router.post(
    REVOCATION_PATH,
    tags=["identity"],
    summary="Revoke a refresh token and its family (RFC 7009)",
    description=(
        "Form-encoded `token` (and optional `token_type_hint`). A refresh token is revoked "
        "with every token rotated from the same sign-in; an access token or an unknown "
        "token changes nothing. Answers 200 with no body in every one of these cases."
    ),
    response_class=Response,
    responses={
        200: {"description": "Revoked, or nothing to revoke"},
        **problem_responses(OAuthInvalidRequest, TooManyRequests),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _REVOCATION_FORM_SCHEMA}},
        }
    },
)
async def revoke_refresh_token(request: Request, database: ServiceDatabase, now: Now) -> Response:
    token = parse_revocation_request(await form_fields(request))
    # Counted like refresh requests: an address may not test token guesses at will.
    await limiter_of(request).hit(TOKEN_BUCKET, f"revoke:{client_address(request)}")
    await revoke_token(database.sessions, token, now=now)
    return Response(status_code=200)
