"""The transfer audit trail's events: what each audited change of this service records.

Pure builders (no SQL); `repository.append_audit` writes them in the transaction of the
change. Ids are deterministic wherever the writer may retry the same fact (a saga step, a
transfer's creation, an accepted cancel, a callback's webhook-id), so a retry writes
nothing new.
"""

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from contracts.audit import ActorType, AuditEventCreate
from contracts.reversals import reversal_workflow_id
from contracts.transfers import (
    CancelRequest,
    ConfirmationCallback,
    ReviewDecision,
    StepRecord,
    TransferCreate,
    TransferStatus,
    initial_status,
    workflow_id,
)
from kit.audit import Actor

# Fixed forever: changing it would give a retried step report a new event id.
TRANSFER_AUDIT_NAMESPACE: Final = uuid.UUID("5b0c6f1e-93a4-4d2b-8e71-0c4a9f6d2e38")
# Step names become part of an action (`transfer.step.<step>`), which admits only these.
STEP_NAME: Final = re.compile(r"[a-z0-9_-]{1,40}")
# The one compensation of the saga: voiding the hold undoes the hold.
IMPLIED_COMPENSATIONS: Final = {"void": "hold"}


def step_event_id(transfer_id: uuid.UUID, step: str) -> uuid.UUID:
    """The id of the audit event of one step of one transfer (the same on every retry)."""
    return uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"{transfer_id}:step:{step}")


def requested_event_id(transfer_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"{transfer_id}:requested")


def cancel_accepted_event_id(transfer_id: uuid.UUID) -> uuid.UUID:
    # The saga accepts a transfer's cancel once (one update id); asking again joins it.
    return uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"{transfer_id}:cancel_requested:accepted")


def callback_event_id(client_id: uuid.UUID, webhook_id: str) -> uuid.UUID:
    return uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"callback:{client_id}:{webhook_id}")


def _accounts(source_account_id: uuid.UUID, target_account_id: uuid.UUID) -> list[str]:
    return [str(source_account_id), str(target_account_id)]


def _without_nones(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _now() -> datetime:
    return datetime.now(UTC)


def _transfer_event(
    actor: Actor,
    *,
    event_id: uuid.UUID,
    action: str,
    transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    outcome: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEventCreate:
    """An event `actor` causes now on one transfer, in its saga."""
    return AuditEventCreate(
        id=event_id,
        occurred_at=_now(),
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action=action,
        subject_type="transfer",
        subject_id=str(transfer_id),
        transfer_id=transfer_id,
        account_ids=_accounts(source_account_id, target_account_id),
        workflow_id=workflow_id(transfer_id),
        request_id=actor.request_id,
        before=before,
        after=after,
        outcome=outcome,
    )


def transfer_requested(
    *,
    transfer_id: uuid.UUID,
    transfer: TransferCreate,
    actor: Actor,
) -> AuditEventCreate:
    return _transfer_event(
        actor,
        event_id=requested_event_id(transfer_id),
        action="transfer.requested",
        transfer_id=transfer_id,
        source_account_id=transfer.source_account_id,
        target_account_id=transfer.target_account_id,
        after=_without_nones(
            {
                "status": initial_status(transfer).value,
                "source_account_id": str(transfer.source_account_id),
                "target_account_id": str(transfer.target_account_id),
                "amount_minor": transfer.amount_minor,
                "currency": transfer.currency,
                "description": transfer.description,
                "execute_at": None
                if transfer.execute_at is None
                else transfer.execute_at.isoformat(),
            }
        ),
        outcome="accepted",
    )


def compensated_step(record: StepRecord) -> str | None:
    """The step a reported step undoes: as reported, or implied by a `void`."""
    return record.compensates_step or IMPLIED_COMPENSATIONS.get(record.step)


def step_reported(
    *,
    transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    record: StepRecord,
    status_before: str,
    version_before: int,
    actor: Actor,
    reversal_of: uuid.UUID | None = None,
) -> AuditEventCreate:
    """`transfer.step.<step>`: the saga's report of one step, with the ledger ids it knew;
    `transfer.reversal.<step>`, naming the reversed transfer too, for a reversal's saga."""
    assert STEP_NAME.fullmatch(record.step), "step names are checked before they get here"
    undone = compensated_step(record)
    fraud = record.fraud
    action_prefix = "transfer.step" if reversal_of is None else "transfer.reversal"
    return AuditEventCreate(
        id=step_event_id(transfer_id, record.step),
        occurred_at=record.occurred_at,
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action=f"{action_prefix}.{record.step}",
        subject_type="transfer",
        subject_id=str(transfer_id),
        transfer_id=transfer_id,
        account_ids=_accounts(source_account_id, target_account_id),
        workflow_id=record.workflow_id or workflow_id(transfer_id),
        run_id=record.run_id,
        request_id=actor.request_id,
        before={"status": status_before, "version": version_before},
        after=_without_nones(
            {
                "status": record.status.value,
                "version": record.version,
                "hold_id": None if record.hold_id is None else str(record.hold_id),
                "posting_id": None if record.posting_id is None else str(record.posting_id),
                "fraud_score": None if fraud is None else fraud.score,
                "fraud_decision": None if fraud is None else fraud.decision.value,
                "failure_reason": record.failure_reason,
                "detail": record.detail,
                "compensates_step": undone,
                "original_transfer_id": None if reversal_of is None else str(reversal_of),
            }
        ),
        outcome=record.outcome,
        compensates=None if undone is None else step_event_id(transfer_id, undone),
    )


def review_decided(
    *,
    transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    decision: ReviewDecision,
    actor: Actor,
) -> AuditEventCreate:
    """A reviewer's verdict handed to the saga. The actor is the token's subject, and so
    is the decision's `reviewer_id`, which the request's body cannot name."""
    return _transfer_event(
        actor,
        event_id=uuid.uuid4(),
        action="transfer.review_decided",
        transfer_id=transfer_id,
        source_account_id=source_account_id,
        target_account_id=target_account_id,
        before={"status": TransferStatus.in_review.value},
        after=_without_nones(
            {
                "decision": decision.decision,
                "reviewer_id": decision.reviewer_id,
                "note": decision.note,
            }
        ),
        outcome="accepted",
    )


def cancel_requested(
    *,
    transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    status_before: str,
    request: CancelRequest,
    refusal: str | None,
    actor: Actor,
) -> AuditEventCreate:
    """A customer's cancel: `accepted` by the saga (once per transfer) or `refused`."""
    return _transfer_event(
        actor,
        event_id=uuid.uuid4() if refusal is not None else cancel_accepted_event_id(transfer_id),
        action="transfer.cancel_requested",
        transfer_id=transfer_id,
        source_account_id=source_account_id,
        target_account_id=target_account_id,
        before={"status": status_before},
        after=_without_nones({"reason": request.reason, "refusal": refusal}),
        outcome="accepted" if refusal is None else "refused",
    )


def callback_actor(client_name: str, *, request_id: str | None) -> Actor:
    """A callback client acts as `callback:<name>`, the reviewer id its decisions carry."""
    return Actor(f"callback:{client_name}", ActorType.service, request_id)


def callback_received(
    *,
    client_id: uuid.UUID,
    client_name: str,
    webhook_id: str,
    confirmation: ConfirmationCallback,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    request_id: str | None,
) -> AuditEventCreate:
    actor = callback_actor(client_name, request_id=request_id)
    transfer_id = confirmation.transfer_id
    return _transfer_event(
        actor,
        event_id=callback_event_id(client_id, webhook_id),
        action="callback.received",
        transfer_id=transfer_id,
        source_account_id=source_account_id,
        target_account_id=target_account_id,
        before={"status": TransferStatus.in_review.value},
        after={
            "decision": confirmation.decision,
            "external_reference": confirmation.external_reference,
            "webhook_id": webhook_id,
            "callback_client_id": str(client_id),
        },
        outcome="accepted",
    )


def callback_client_registered(
    *,
    client_id: uuid.UUID,
    name: str,
    description: str | None,
    account_ids: list[uuid.UUID],
    reference_prefix: str | None,
    actor: Actor,
) -> AuditEventCreate:
    """Never the secret: only who registered which client, and what it may decide."""
    return AuditEventCreate(
        id=uuid.uuid4(),
        occurred_at=_now(),
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action="callback_client.registered",
        subject_type="callback_client",
        subject_id=str(client_id),
        request_id=actor.request_id,
        after=_without_nones(
            {
                "name": name,
                "description": description,
                "account_ids": [str(account_id) for account_id in account_ids],
                "reference_prefix": reference_prefix,
            }
        ),
        outcome="succeeded",
    )


# The reconciler (transactions.reconciler) acts as the system, not as any caller.
RECONCILER_ACTOR: Final = Actor("system:saga-reconciler", ActorType.system)


def saga_reconciled(
    *,
    transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    requested_at: datetime,
    start_deadline: datetime,
) -> AuditEventCreate:
    """The reconciler confirmed a transfer's saga with Temporal (started it, or found it
    started) after the request that recorded the transfer failed to: once per transfer."""
    actor = RECONCILER_ACTOR
    return _transfer_event(
        actor,
        event_id=uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"{transfer_id}:saga_reconciled"),
        action="transfer.saga_reconciled",
        transfer_id=transfer_id,
        source_account_id=source_account_id,
        target_account_id=target_account_id,
        after={
            "requested_at": requested_at.isoformat(),
            "start_deadline": start_deadline.isoformat(),
        },
        outcome="started",
    )


def reversal_requested_event_id(reversal_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"{reversal_id}:reversal_requested")


def reversal_requested(
    *,
    reversal_id: uuid.UUID,
    original_transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    reason: str,
    reversed_before_minor: int,
    actor: Actor,
) -> AuditEventCreate:
    """`transfer.reversal.requested`: a reversal admitted, naming both transfers and what
    had been reversed before it (the sum its admission checked)."""
    return AuditEventCreate(
        id=reversal_requested_event_id(reversal_id),
        occurred_at=_now(),
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action="transfer.reversal.requested",
        subject_type="transfer",
        subject_id=str(reversal_id),
        transfer_id=reversal_id,
        account_ids=_accounts(source_account_id, target_account_id),
        workflow_id=reversal_workflow_id(reversal_id),
        request_id=actor.request_id,
        after={
            "status": TransferStatus.pending.value,
            "original_transfer_id": str(original_transfer_id),
            "amount_minor": amount_minor,
            "currency": currency,
            "reason": reason,
            "reversed_before_minor": reversed_before_minor,
        },
        outcome="accepted",
    )


def reversal_admitted(
    *,
    reversal_id: uuid.UUID,
    original_transfer_id: uuid.UUID,
    source_account_id: uuid.UUID,
    target_account_id: uuid.UUID,
    amount_minor: int,
    reversed_before_minor: int,
    actor: Actor,
) -> AuditEventCreate:
    """`transfer.reversal.admitted`, on the original's trail: a timeline of the original
    (`sagabank audit --transfer`) names each of its reversals. The accounts are the
    original's (payer, payee)."""
    return _transfer_event(
        actor,
        event_id=uuid.uuid5(TRANSFER_AUDIT_NAMESPACE, f"{reversal_id}:reversal_admitted"),
        action="transfer.reversal.admitted",
        transfer_id=original_transfer_id,
        source_account_id=source_account_id,
        target_account_id=target_account_id,
        before={"reversed_minor": reversed_before_minor},
        after={
            "reversal_id": str(reversal_id),
            "original_transfer_id": str(original_transfer_id),
            "amount_minor": amount_minor,
            "reversed_minor": reversed_before_minor + amount_minor,
        },
        outcome="accepted",
    )
