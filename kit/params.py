"""Request parameters and dependencies every service's routes share, defined once:
the clock (`Now`), the audit actor, the Idempotency-Key header, and (from kit.pagination)
`Limit` and `Cursor`."""

from datetime import datetime
from typing import Annotated, Final

from fastapi import Depends, Header, Request

from contracts.transfers import IDEMPOTENCY_KEY_LENGTH_MAX, IDEMPOTENCY_KEY_PATTERN
from kit.audit import Actor, request_id_of
from kit.auth import Principal, authenticate
from kit.errors import IdempotencyKeyMissing
from kit.pagination import Cursor, Limit
from kit.resources import ServiceResources, resources_of

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "AuditActor",
    "Cursor",
    "IdempotencyKey",
    "Limit",
    "Now",
    "audit_actor",
    "current_time",
    "required_idempotency_key",
]

IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"


async def current_time(request: Request) -> datetime:
    """Now, by the app's clock (its resources')."""
    return resources_of(request.app, ServiceResources).clock()


async def audit_actor(
    principal: Annotated[Principal, Depends(authenticate)], request: Request
) -> Actor:
    """Who makes this request's change, as its audit event records them."""
    return Actor.of(principal, request_id=request_id_of(request))


Now = Annotated[datetime, Depends(current_time)]
AuditActor = Annotated[Actor, Depends(audit_actor)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        min_length=1,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Required. Printable ASCII (1 to 255 characters), unique per intended "
        "change; a retry sends it again and gets the first answer.",
    ),
]


def required_idempotency_key(idempotency_key: str | None) -> str:
    """The request's Idempotency-Key; `IdempotencyKeyMissing` without one. (An empty or
    malformed header never gets here: `IdempotencyKey` answers it 422 invalid-request.)"""
    if idempotency_key is None:
        raise IdempotencyKeyMissing(
            f"send an Idempotency-Key header (1 to {IDEMPOTENCY_KEY_LENGTH_MAX} characters)"
        )
    return idempotency_key
