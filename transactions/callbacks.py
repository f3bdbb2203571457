"""Inbound confirmation callbacks: external systems decide transfers in review.

Each request is signed per Standard Webhooks with the secret of a registered callback
client. Everything that can refuse a request is checked before anything changes, in
this order: signature headers, client, timestamp (±5 min), signature, replay of a
`webhook-id`, body, transfer. A client decides only the transfers it is bound to (its
accounts, its reference prefix); any other answers 404 as a missing one. A replayed id
answers the first answer again and changes nothing; a refused request leaves no trace.
"""

import binascii
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from contracts.transfers import (
    CALLBACK_TIMESTAMP_TOLERANCE_SECONDS,
    TRANSFER_REFERENCE_METADATA_KEY,
    CallbackClientCreate,
    CallbackClientCreated,
    ConfirmationCallback,
    ConfirmationReceipt,
    ReviewDecision,
    TransferStatus,
    workflow_id,
)
from kit.errors import InvalidRequest
from kit.sealing import SealedValueUnreadable
from transactions import audit, repository
from transactions.callback_secrets import CallbackSecretBox, new_secret, render_secret
from transactions.errors import (
    CallbackClientExists,
    CallbackSignatureInvalid,
    CallbacksNotConfigured,
    CallbackTimestampInvalid,
    TransferNotFound,
    TransferNotInReview,
)
from transactions.models import CallbackClientRow, TransferRow
from transactions.service import Requester
from transactions.workflow_client import TransferWorkflows

log = structlog.get_logger()

WEBHOOK_ID_HEADER: Final = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER: Final = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER: Final = "webhook-signature"
_WEBHOOK_ID_LENGTH_MAX: Final = 255
# Room for a few `v1,<base64>` signatures (a sender rotating its secret sends two).
_SIGNATURE_LENGTH_MAX: Final = 1024
_PRINTABLE: Final = re.compile(r"[\x21-\x7E]+")
_PRINTABLE_WITH_SPACES: Final = re.compile(r"[\x20-\x7E]+")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class ConfirmationAnswer:
    receipt: ConfirmationReceipt
    replayed: bool


def _box(box: CallbackSecretBox | None) -> CallbackSecretBox:
    if box is None:
        raise CallbacksNotConfigured("set TRANSACTIONS_SECRETS_KEYS to accept callbacks")
    return box


async def register_client(
    session: AsyncSession,
    box: CallbackSecretBox | None,
    *,
    request: CallbackClientCreate,
    requester: Requester,
) -> CallbackClientCreated:
    """Register a callback client and return its secret: the only time anyone sees it.
    Audited as `callback_client.registered` (who registered it; never the secret)."""
    sealing = _box(box)
    client_id = uuid.uuid4()
    secret = new_secret()
    row = await repository.insert_callback_client(
        session,
        client_id=client_id,
        name=request.name,
        description=request.description,
        # Each account once, in the order the operator gave them.
        account_ids=list(dict.fromkeys(request.account_ids)),
        reference_prefix=request.reference_prefix,
        secret_ciphertext=sealing.seal(client_id=client_id, secret=secret),
    )
    if row is None:
        raise CallbackClientExists(f"a callback client named {request.name!r} exists")
    await repository.append_audit(
        session,
        audit.callback_client_registered(
            client_id=row.id,
            name=row.name,
            description=row.description,
            account_ids=row.account_ids,
            reference_prefix=row.reference_prefix,
            actor=requester.actor,
        ),
    )
    log.info("callback.client_registered", client_id=str(client_id), name=request.name)
    return CallbackClientCreated(
        id=row.id,
        name=row.name,
        description=row.description,
        account_ids=row.account_ids,
        reference_prefix=row.reference_prefix,
        created_at=row.created_at,
        secret=render_secret(secret),
    )


def may_decide(client: CallbackClientRow, transfer: TransferRow) -> bool:
    """Whether `client` may decide `transfer`: its money leaves one of the client's
    accounts and its `reference` starts with the client's prefix, if it has one."""
    # The source, not the target: approving releases the source's money, so only a
    # client bound to the payer's side may. A client bound to no account decides nothing.
    if transfer.source_account_id not in client.account_ids:
        return False
    if client.reference_prefix is None:
        return True
    reference = transfer.metadata_.get(TRANSFER_REFERENCE_METADATA_KEY)
    return reference is not None and reference.startswith(client.reference_prefix)


def _signature_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    webhook_id = headers.get(WEBHOOK_ID_HEADER, "")
    timestamp = headers.get(WEBHOOK_TIMESTAMP_HEADER, "")
    signature = headers.get(WEBHOOK_SIGNATURE_HEADER, "")
    if not (webhook_id and timestamp and signature):
        raise CallbackSignatureInvalid(
            "send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)"
        )
    if len(webhook_id) > _WEBHOOK_ID_LENGTH_MAX or not _PRINTABLE.fullmatch(webhook_id):
        raise CallbackSignatureInvalid("webhook-id must be 1 to 255 printable characters")
    if len(signature) > _SIGNATURE_LENGTH_MAX or not _PRINTABLE_WITH_SPACES.fullmatch(signature):
        raise CallbackSignatureInvalid("webhook-signature is malformed")
    return webhook_id, timestamp, signature


def _check_timestamp(timestamp: str, *, now_seconds: float) -> None:
    if not _TIMESTAMP.fullmatch(timestamp):
        raise CallbackTimestampInvalid("webhook-timestamp must be whole seconds since the epoch")
    if abs(now_seconds - int(timestamp)) > CALLBACK_TIMESTAMP_TOLERANCE_SECONDS:
        raise CallbackTimestampInvalid(
            f"webhook-timestamp is more than {CALLBACK_TIMESTAMP_TOLERANCE_SECONDS} s "
            "from our clock; sign the message again when (re)sending it"
        )


def _verify_signature(secret: bytes, body: bytes, headers: dict[str, str]) -> None:
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error, UnicodeDecodeError) as error:
        # The library raises ValueError (and binascii.Error) on malformed signatures.
        raise CallbackSignatureInvalid(
            "no signature in webhook-signature matches this client's secret"
        ) from error


async def receive_confirmation(
    session: AsyncSession,
    workflows: TransferWorkflows,
    box: CallbackSecretBox | None,
    *,
    client_id: str | None,
    headers: Mapping[str, str],
    body: bytes,
    request_id: str | None,
) -> ConfirmationAnswer:
    """Verify a signed confirmation and hand its decision to the transfer's saga (signal
    `review_decision`), once per (client, webhook-id), audited as `callback.received` in
    the same transaction as its receipt."""
    client, webhook_id = await _verified_sender(
        session, _box(box), client_id=client_id, headers=headers, body=body
    )
    seen = await _earlier_answer(session, client_id=client.id, webhook_id=webhook_id)
    if seen is not None:
        log.info("callback.replayed")
        return seen
    confirmation = _confirmation_of(body)
    transfer = await _transfer_in_review(session, client, confirmation.transfer_id)
    receipt = ConfirmationReceipt(
        webhook_id=webhook_id,
        transfer_id=confirmation.transfer_id,
        decision=confirmation.decision,
        external_reference=confirmation.external_reference,
        transfer_status=TransferStatus.in_review,
    )
    if not await _record_receipt(session, client.id, confirmation, receipt):
        # A concurrent delivery of the same id took effect first: answer as it did.
        first = await _earlier_answer(session, client_id=client.id, webhook_id=webhook_id)
        assert first is not None, "a receipt that conflicts exists"
        return first
    # The receipt commits only if the signal went through (the request's transaction
    # rolls back on any error), so a refused or failed call leaves nothing behind.
    await _hand_to_saga(workflows, client.name, confirmation)
    # After the signal: the append's chain lock must not wait on a Temporal round trip.
    await repository.append_audit(
        session,
        audit.callback_received(
            client_id=client.id,
            client_name=client.name,
            webhook_id=webhook_id,
            confirmation=confirmation,
            source_account_id=transfer.source_account_id,
            target_account_id=transfer.target_account_id,
            request_id=request_id,
        ),
    )
    log.info(
        "callback.confirmation_accepted",
        decision=confirmation.decision,
        external_reference=confirmation.external_reference,
    )
    return ConfirmationAnswer(receipt=receipt, replayed=False)


async def _verified_sender(
    session: AsyncSession,
    sealing: CallbackSecretBox,
    *,
    client_id: str | None,
    headers: Mapping[str, str],
    body: bytes,
) -> tuple[CallbackClientRow, str]:
    """The registered client whose secret signed `body` within the tolerance, and the
    message's webhook-id; anything else is refused alike (a prober learns nothing)."""
    webhook_id, timestamp, signature = _signature_headers(headers)
    try:
        client_uuid = uuid.UUID(client_id or "")
    except ValueError as error:
        raise CallbackSignatureInvalid("send the Callback-Client-Id you registered") from error
    client = await repository.get_callback_client(session, client_uuid)
    if client is None:
        # Answered like a bad signature: an unknown id tells a prober nothing more.
        raise CallbackSignatureInvalid("no signature matches a registered client")
    structlog.contextvars.bind_contextvars(callback_client=client.name, webhook_id=webhook_id)
    _check_timestamp(timestamp, now_seconds=time.time())
    try:
        secret = sealing.open(client_id=client.id, sealed=client.secret_ciphertext)
    except SealedValueUnreadable:
        # No key of the ring opens it (its key was removed before a rotation re-sealed it):
        # restore the key, or the client must register again.
        log.error("callback.secret_unreadable")
        raise CallbackSignatureInvalid("no signature matches a registered client") from None
    _verify_signature(
        secret,
        body,
        {
            WEBHOOK_ID_HEADER: webhook_id,
            WEBHOOK_TIMESTAMP_HEADER: timestamp,
            WEBHOOK_SIGNATURE_HEADER: signature,
        },
    )
    return client, webhook_id


async def _earlier_answer(
    session: AsyncSession, *, client_id: uuid.UUID, webhook_id: str
) -> ConfirmationAnswer | None:
    """The answer a delivery of this webhook-id already got, replayed."""
    seen = await repository.get_callback_receipt(
        session, client_id=client_id, webhook_id=webhook_id
    )
    if seen is None:
        return None
    return ConfirmationAnswer(
        receipt=ConfirmationReceipt.model_validate(seen.response_body), replayed=True
    )


def _confirmation_of(body: bytes) -> ConfirmationCallback:
    try:
        confirmation = ConfirmationCallback.model_validate_json(body)
    except ValidationError as error:
        raise InvalidRequest.of_validation(error, "the body is not a confirmation") from error
    structlog.contextvars.bind_contextvars(
        transfer_id=str(confirmation.transfer_id),
        workflow_id=workflow_id(confirmation.transfer_id),
    )
    return confirmation


async def _transfer_in_review(
    session: AsyncSession, client: CallbackClientRow, transfer_id: uuid.UUID
) -> TransferRow:
    """The transfer, if `client` may decide it and it waits in review. One the client may
    not decide answers exactly as a missing one, whatever its status."""
    transfer = await repository.get_transfer(session, transfer_id)
    if transfer is not None and not may_decide(client, transfer):
        # Logged, not audited: the refusal changes nothing, like every refused callback,
        # and an audit event would need a transaction of its own that a client holding a
        # valid secret could make us write at will (decision 0014).
        log.warning("callback.outside_binding")
        transfer = None
    if transfer is None:
        raise TransferNotFound(f"no transfer {transfer_id}")
    if transfer.status != TransferStatus.in_review.value:
        raise TransferNotInReview(f"the transfer is {transfer.status}")
    return transfer


async def _record_receipt(
    session: AsyncSession,
    client_id: uuid.UUID,
    confirmation: ConfirmationCallback,
    receipt: ConfirmationReceipt,
) -> bool:
    """Store the receipt (the answer to replay); False when the webhook-id has one already."""
    return await repository.insert_callback_receipt(
        session,
        client_id=client_id,
        webhook_id=receipt.webhook_id,
        transfer_id=confirmation.transfer_id,
        decision=confirmation.decision,
        external_reference=confirmation.external_reference,
        response_body=receipt.model_dump(mode="json"),
    )


async def _hand_to_saga(
    workflows: TransferWorkflows, client_name: str, confirmation: ConfirmationCallback
) -> None:
    """Signal the decision to the saga, the callback client named as its reviewer."""
    note = f"ref {confirmation.external_reference}" + (
        f": {confirmation.note}" if confirmation.note else ""
    )
    decision = ReviewDecision(
        decision=confirmation.decision, reviewer_id=f"callback:{client_name}", note=note
    )
    if not await workflows.signal_review_decision(
        transfer_id=confirmation.transfer_id, decision=decision
    ):
        raise TransferNotInReview("the transfer's workflow has already finished")
