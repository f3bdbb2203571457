"""Use cases of reversals: move a completed transfer's money back, payee to payer, in parts.

A reversal is a transfers row naming the transfer it reverses (`reversal_of`), run by its
own saga (ReversalWorkflow) and recorded by the same step reports; docs/decisions/0032.
Creating one follows `service.create_transfer`: the same Idempotency-Key claim, the row
committed before the saga starts, the answer stored once the saga has started.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.auth import Scope
from contracts.reversals import Reversal, ReversalCreate
from contracts.reversals import reversal_workflow_id as workflow_id_of
from contracts.transfers import TRANSFER_REVERSALS_MAX, TransferCreate, TransferStatus
from kit.auth import Principal
from kit.db import Database
from kit.params import required_idempotency_key
from transactions import audit, repository, reversal_repository
from transactions.accounts_client import SourceAccounts
from transactions.changes import ChangeListener
from transactions.errors import (
    AccountNotFound,
    ReversalExceedsTransfer,
    ReversalNotFound,
    TransferNotFound,
    TransferNotReversible,
)
from transactions.models import IdempotencyKeyRow, TransferRow, TransferStepRow
from transactions.service import (
    IdempotencyPolicy,
    Requester,
    TransferCreation,
    abandon_claim,
    answer_of_the_retry,
    caller_key,
    canonical_hash,
    claim_or_wait,
    release_claim,
    step_views,
    visible_to,
)
from transactions.workflow_client import TransferWorkflows

log = structlog.get_logger()


def reversal_request_hash(original_transfer_id: uuid.UUID, reversal: ReversalCreate) -> str:
    """SHA-256 of the canonical request: the reversed transfer and the parsed body. It
    differs from every transfer's, so a key reused across the two is refused (422)."""
    return canonical_hash(
        {"reversal_of": str(original_transfer_id), **reversal.model_dump(mode="json")}
    )


def to_reversal(row: TransferRow, steps: Sequence[TransferStepRow]) -> Reversal:
    assert row.reversal_of is not None, "only a reversal's row makes a reversal"
    return Reversal(
        id=row.id,
        workflow_id=workflow_id_of(row.id),
        original_transfer_id=row.reversal_of,
        status=TransferStatus(row.status),
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        reason=row.reversal_reason,
        steps=step_views(steps),
        hold_id=row.hold_id,
        posting_id=row.posting_id,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def create_reversal(
    database: Database,
    workflows: TransferWorkflows,
    changes: ChangeListener,
    policy: IdempotencyPolicy,
    accounts: SourceAccounts,
    *,
    requester: Requester,
    original_transfer_id: uuid.UUID,
    idempotency_key: str | None,
    reversal: ReversalCreate,
) -> TransferCreation:
    """Admit a reversal of a completed transfer and start its saga, at most once per
    (caller, idempotency key). A refusal (404, 409) leaves no trace, the key included."""
    caller = caller_key(requester.principal)
    key = required_idempotency_key(idempotency_key)
    hash_of_request = reversal_request_hash(original_transfer_id, reversal)
    outcome = await claim_or_wait(
        database, changes, policy, caller=caller, key=key, hash_of_request=hash_of_request
    )
    if isinstance(outcome, TransferCreation):
        return outcome
    reversal_id = outcome
    structlog.contextvars.bind_contextvars(
        reversal_id=str(reversal_id),
        transfer_id=str(original_transfer_id),
        workflow_id=workflow_id_of(reversal_id),
    )
    try:
        await _check_may_reverse(database, accounts, requester, original_transfer_id)
        recorded = await _record_reversal(
            database,
            reversal_id=reversal_id,
            original_transfer_id=original_transfer_id,
            reversal=reversal,
            requester=requester,
        )
    except BaseException:
        await abandon_claim(database, caller=caller, key=key, transfer_id=reversal_id)
        raise
    try:
        await workflows.start_reversal(
            reversal_id=reversal_id,
            original_transfer_id=original_transfer_id,
            transfer=recorded.terms,
            reason=recorded.reason,
            source_customer_id=requester.principal.customer_id,
            requested_at=recorded.requested_at,
        )
        body, taken_over = await _complete_claim(
            database, caller=caller, key=key, reversal_id=reversal_id
        )
    except BaseException:
        await release_claim(database, caller=caller, key=key, transfer_id=reversal_id)
        raise
    if taken_over is not None:
        return answer_of_the_retry(taken_over, hash_of_request)
    log.info("reversal.created", amount_minor=recorded.terms.amount_minor)
    return TransferCreation(transfer_id=reversal_id, status_code=202, body=body, replayed=False)


async def _check_may_reverse(
    database: Database,
    accounts: SourceAccounts,
    requester: Requester,
    original_transfer_id: uuid.UUID,
) -> None:
    """Operators with `transfers:reverse` may reverse any transfer; a customer only one
    into an account of theirs (a refund by the payee). Anyone else: 404, as for a
    transfer they cannot see."""
    principal = requester.principal
    async with database.sessions() as session:
        original = await repository.get_transfer(session, original_transfer_id)
    if original is None or original.reversal_of is not None:
        raise TransferNotFound(f"no transfer {original_transfer_id}")
    if principal.has(Scope.transfers_reverse):
        return
    if principal.customer_id is None:
        raise TransferNotFound(f"no transfer {original_transfer_id}")
    try:
        await accounts.check_owned(
            account_id=original.target_account_id,
            authorization=requester.authorization or "",
            principal=principal,
        )
    except AccountNotFound:
        raise TransferNotFound(f"no transfer {original_transfer_id}") from None


class _Recorded:
    """A reversal as recorded: its terms (payee to payer), reason and recording time."""

    def __init__(self, row: TransferRow, requested_at: datetime) -> None:
        self.terms = TransferCreate(
            source_account_id=row.source_account_id,
            target_account_id=row.target_account_id,
            amount_minor=row.amount_minor,
            currency=row.currency,
        )
        self.reason = row.reversal_reason
        self.requested_at = requested_at


async def _record_reversal(
    database: Database,
    *,
    reversal_id: uuid.UUID,
    original_transfer_id: uuid.UUID,
    reversal: ReversalCreate,
    requester: Requester,
) -> _Recorded:
    """Commit the reversal and its audit events (`transfer.reversal.requested` on it,
    `transfer.reversal.admitted` on the original) under the original's row lock, unless an
    earlier attempt of this request did (a resumed claim)."""
    async with database.sessions() as session, session.begin():
        original = await reversal_repository.lock_transfer(session, original_transfer_id)
        if original is None:
            raise TransferNotFound(f"no transfer {original_transfer_id}")
        existing = await repository.get_transfer(session, reversal_id)
        if existing is not None:
            return _Recorded(existing, existing.created_at)
        amount_minor, reversed_before_minor = await _admit(session, original, reversal)
        requested_at = await reversal_repository.insert_reversal(
            session,
            reversal_id=reversal_id,
            original=original,
            amount_minor=amount_minor,
            reason=reversal.reason,
            customer_id=requester.principal.customer_id,
        )
        await repository.append_audit_events(
            session,
            _admission_events(
                reversal_id=reversal_id,
                original=original,
                amount_minor=amount_minor,
                reason=reversal.reason,
                reversed_before_minor=reversed_before_minor,
                requester=requester,
            ),
        )
        row = await repository.get_transfer(session, reversal_id)
        assert row is not None, "inserted above, in this transaction"
        return _Recorded(row, requested_at)


def _admission_events(
    *,
    reversal_id: uuid.UUID,
    original: TransferRow,
    amount_minor: int,
    reason: str,
    reversed_before_minor: int,
    requester: Requester,
) -> list[AuditEventCreate]:
    """The reversal's first event, and the original's note that it has one more."""
    return [
        audit.reversal_admitted(
            reversal_id=reversal_id,
            original_transfer_id=original.id,
            source_account_id=original.source_account_id,
            target_account_id=original.target_account_id,
            amount_minor=amount_minor,
            reversed_before_minor=reversed_before_minor,
            actor=requester.actor,
        ),
        audit.reversal_requested(
            reversal_id=reversal_id,
            original_transfer_id=original.id,
            source_account_id=original.target_account_id,
            target_account_id=original.source_account_id,
            amount_minor=amount_minor,
            currency=original.currency,
            reason=reason,
            reversed_before_minor=reversed_before_minor,
            actor=requester.actor,
        ),
    ]


async def _admit(
    session: AsyncSession, original: TransferRow, reversal: ReversalCreate
) -> tuple[int, int]:
    """The amount to reverse and what was reversed before, or the refusal. Runs under the
    original's row lock, so two concurrent reversals are counted one after the other."""
    if original.status != TransferStatus.completed.value:
        raise TransferNotReversible(
            f"the transfer is {original.status}; only a completed transfer can be reversed"
        )
    reversed_minor, reversals_count = await reversal_repository.reversal_totals(
        session, original.id
    )
    remaining_minor = original.amount_minor - reversed_minor
    if reversals_count >= TRANSFER_REVERSALS_MAX:
        raise ReversalExceedsTransfer(
            f"the transfer has {reversals_count} reversals, the most one transfer may have"
        )
    amount_minor = remaining_minor if reversal.amount_minor is None else reversal.amount_minor
    if remaining_minor <= 0 or amount_minor > remaining_minor:
        raise ReversalExceedsTransfer(
            f"{remaining_minor} of the transfer's {original.amount_minor} is left to reverse"
        )
    return amount_minor, reversed_minor


async def _complete_claim(
    database: Database, *, caller: str, key: str, reversal_id: uuid.UUID
) -> tuple[dict[str, Any], IdempotencyKeyRow | None]:
    """Record the started saga and store the answer under the key (as service's)."""
    async with database.sessions() as session, session.begin():
        await repository.mark_saga_started(session, transfer_id=reversal_id)
        body = (await _load_reversal(session, reversal_id)).model_dump(mode="json")
        completed = await repository.complete_idempotency_key(
            session,
            caller=caller,
            key=key,
            transfer_id=reversal_id,
            response_status=202,
            response_body=body,
        )
        if completed:
            return body, None
        return body, await repository.get_idempotency_key(session, caller=caller, key=key)


async def _load_reversal(session: AsyncSession, reversal_id: uuid.UUID) -> Reversal:
    row = await reversal_repository.get_reversal(session, reversal_id)
    if row is None:
        raise ReversalNotFound(f"no reversal {reversal_id}")
    return to_reversal(row, await repository.list_steps(session, [row.id]))


async def get_reversal(
    session: AsyncSession, *, reversal_id: uuid.UUID, viewer: Principal
) -> Reversal:
    """A reversal, for whoever asked for it or may see the transfer it reverses."""
    row = await reversal_repository.get_reversal(session, reversal_id)
    if row is None or row.reversal_of is None:
        raise ReversalNotFound(f"no reversal {reversal_id}")
    if not visible_to(row, viewer):
        original = await repository.get_transfer(session, row.reversal_of)
        if original is None or not visible_to(original, viewer):
            raise ReversalNotFound(f"no reversal {reversal_id}")
    return to_reversal(row, await repository.list_steps(session, [row.id]))


async def list_reversals(
    session: AsyncSession, *, transfer_id: uuid.UUID, viewer: Principal
) -> list[Reversal]:
    """A transfer's reversals, oldest first: all of them for whoever may see the transfer,
    else those the viewer asked for; 404 for a transfer the viewer has no part in."""
    original = await repository.get_transfer(session, transfer_id)
    if original is None or original.reversal_of is not None:
        raise TransferNotFound(f"no transfer {transfer_id}")
    rows = await reversal_repository.list_reversals(session, [transfer_id])
    if not visible_to(original, viewer):
        rows = [row for row in rows if visible_to(row, viewer)]
        if not rows:
            raise TransferNotFound(f"no transfer {transfer_id}")
    steps = await repository.list_steps(session, [row.id for row in rows])
    return [to_reversal(row, [s for s in steps if s.transfer_id == row.id]) for row in rows]
