"""The audit event of a change an actor made, built one way for every service that
writes its trail with kit.audit."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from contracts.audit import AuditEventCreate
from kit.audit import Actor

SUCCEEDED: Final = "succeeded"


def change_event(
    actor: Actor,
    *,
    action: str,
    subject_type: str,
    subject_id: uuid.UUID | str,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    transfer_id: uuid.UUID | None = None,
    account_ids: Sequence[str] = (),
) -> AuditEventCreate:
    """The event of `actor`'s change of a subject, which succeeded at `now`; a fresh id
    (writers whose retries must collapse build their own deterministic one)."""
    return AuditEventCreate(
        id=uuid.uuid4(),
        occurred_at=now,
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        transfer_id=transfer_id,
        account_ids=list(account_ids),
        request_id=actor.request_id,
        before=before,
        after=after,
        outcome=SUCCEEDED,
    )
