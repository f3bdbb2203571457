"""The audit event of an actor's change: who, what, on which subject, before and after."""

import uuid
from datetime import UTC, datetime

from contracts.audit import ActorType
from kit.audit import Actor, change_event

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
ACTOR = Actor(actor_id="operator-7", actor_type=ActorType.operator, request_id="request-1")


def test_records_the_actor_the_subject_and_success() -> None:
    subject_id = uuid.uuid4()
    event = change_event(
        ACTOR,
        action="deny_list.entry_added",
        subject_type="deny_list_entry",
        subject_id=subject_id,
        now=NOW,
        after={"reason": "fraud ring"},
        account_ids=[str(subject_id)],
    )
    assert (event.actor_id, event.actor_type, event.request_id) == (
        "operator-7",
        ActorType.operator,
        "request-1",
    )
    assert (event.subject_type, event.subject_id) == ("deny_list_entry", str(subject_id))
    assert (event.occurred_at, event.outcome) == (NOW, "succeeded")
    assert (event.before, event.after) == (None, {"reason": "fraud ring"})
    assert (event.transfer_id, event.account_ids) == (None, [str(subject_id)])


def test_every_event_has_its_own_id() -> None:
    events = [
        change_event(ACTOR, action="x.changed", subject_type="x", subject_id="s", now=NOW)
        for _ in range(2)
    ]
    assert events[0].id != events[1].id
