"""Use cases of the notifications service: events in, webhook endpoints, deliveries, contacts.

The owner of an endpoint, delivery or contact is the `customer_id` argument of every use
case (the API takes it from the bearer token, never from the request). Changes take an
`Actor` and write their audit event in the same transaction; reads by an operator take a
`Viewer` that sees every owner's objects, and of the changes only a redelivery accepts
one (it sends again what was sent and changes none of the customer's settings).
"""

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import ActorType, AuditEventCreate
from contracts.common import Identifier, Page
from contracts.notifications import (
    DELIVERY_ATTEMPTS_SHOWN_MAX,
    Delivery,
    DeliveryAttempt,
    DeliveryDetail,
    DeliveryStatus,
    EmailContact,
    Event,
    EventCreate,
    EventType,
    TransferEventData,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointUpdate,
    WebhookSecretRotated,
)
from kit.audit import Actor, change_event
from kit.pagination import cut_page, decode_position, encode_position, fetch_limit, keyset_page
from kit.sealing import KeyRing, SealedValueUnreadable
from notifications import mail, repository, webhook_signatures
from notifications.errors import (
    DeliveryNotFound,
    DeliveryPending,
    EmailContactNotFound,
    EventIdReused,
    EventNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointLimitReached,
    WebhookEndpointNotFound,
    WebhookUrlNotAllowed,
)
from notifications.models import (
    DeliveryAttemptRow,
    DeliveryRow,
    EmailContactRow,
    EventRow,
    WebhookEndpointRow,
)
from notifications.ssrf import Resolver, TargetPolicy, TargetRefused, check_registration

log = structlog.get_logger()

# Rotating again within a grace period keeps at most this many secrets signing at once.
SECRETS_LIVE_MAX: Final = 3
# The customer who receives the money learns only that it arrived.
TARGET_EVENT_TYPES: Final = frozenset({EventType.transfer_completed, EventType.transfer_reversed})
DISABLED_BY_OWNER: Final = "disabled"

_customer_id: TypeAdapter[str] = TypeAdapter(Identifier)

OnCommit = Callable[[], None]

# The audit actor of what the dispatcher does on its own (e.g. disabling a gone endpoint).
DISPATCHER_ACTOR_ID: Final = "notifications-dispatcher"


@dataclass(frozen=True)
class Viewer:
    """Whose endpoints and deliveries a reader sees: one customer's, or (`customer_id`
    None) an operator's view of every customer's. Reads and redelivery only: other
    changes take an owner."""

    customer_id: str | None


def _url_summary(url: str) -> dict[str, str]:
    """Where an endpoint points, for the audit trail: its origin and a fingerprint of the
    whole URL. Never the URL itself: receivers often put a capability token in the path
    or query (Slack-style hook URLs), and the audit trail keeps no secrets."""
    parts = urlsplit(url)
    return {
        "url_origin": f"{parts.scheme}://{parts.netloc}",
        "url_sha256": hashlib.sha256(url.encode()).hexdigest(),
    }


def _endpoint_summary(row: WebhookEndpointRow) -> dict[str, Any]:
    return {
        **_url_summary(row.url),
        "event_types": list(row.event_types),
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
    }


def _transfer_of(data: dict[str, Any]) -> tuple[uuid.UUID | None, list[str]]:
    """The transfer and accounts an event names, for the audit trail (None, [] if malformed)."""
    try:
        transfer = TransferEventData.model_validate(data)
    except ValidationError:
        return None, []
    return transfer.transfer_id, [
        str(transfer.source_account_id),
        str(transfer.target_account_id),
    ]


def endpoint_disabled_as_gone_event(
    *, endpoint_id: uuid.UUID, delivery_id: uuid.UUID, event_id: uuid.UUID, now: datetime
) -> AuditEventCreate:
    """The audit event of the dispatcher disabling an endpoint that answered 410 Gone."""
    return change_event(
        Actor(actor_id=DISPATCHER_ACTOR_ID, actor_type=ActorType.system),
        action="webhook_endpoint.auto_disabled",
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        now=now,
        before={"enabled": True},
        after={
            "enabled": False,
            "disabled_reason": "gone",
            "delivery_id": str(delivery_id),
            "event_id": str(event_id),
        },
    )


@dataclass(frozen=True)
class WebhookRules:
    """The settings the webhook use cases obey (main.py reads them, the rest gets them)."""

    policy: TargetPolicy
    resolver: Resolver
    endpoints_per_customer_max: int
    secret_grace_seconds: int
    # Seals every new signing secret under its newest key.
    key_ring: KeyRing


# --- signing secrets, sealed at rest ------------------------------------------------


async def _store_new_secret(
    session: AsyncSession, ring: KeyRing, *, endpoint_id: uuid.UUID, now: datetime
) -> str:
    """A fresh signing secret for the endpoint, stored sealed (bound to its row id)."""
    secret = webhook_signatures.new_secret()
    secret_id = uuid.uuid4()
    await repository.insert_secret(
        session,
        secret_id=secret_id,
        endpoint_id=endpoint_id,
        secret_sealed=ring.seal(secret.encode(), associated_data=secret_id.bytes),
        now=now,
    )
    return secret


def opened_secrets(ring: KeyRing, stored: Sequence[repository.StoredSecret]) -> list[str]:
    """The secrets in use, opened; one no key of the ring opens (a key removed too early, a
    sealed value moved from another row) is logged and signs nothing."""
    opened = []
    for secret in stored:
        if secret.plain_text is not None:
            # Written before sealing, not yet sealed by a start or a rotation.
            opened.append(secret.plain_text)
            continue
        assert secret.sealed is not None, "a row is sealed or plain text (a CHECK says so)"
        try:
            opened.append(ring.open(secret.sealed, associated_data=secret.secret_id.bytes).decode())
        except SealedValueUnreadable as error:
            log.error("webhook_secret.unreadable", secret_id=str(secret.secret_id), why=str(error))
    return opened


async def seal_plain_text_secrets(
    sessions: Callable[[], AsyncSession], ring: KeyRing, *, batch_size: int, batches_max: int
) -> int:
    """Seal the secrets still in plain text (rows from before sealing), a batch per
    transaction; how many. Safe to run in every replica at once (rows are locked)."""
    sealed = 0
    after: uuid.UUID | None = None
    for _ in range(batches_max):
        async with sessions() as session, session.begin():
            batch = await repository.reseal_secrets(
                session, ring, after=after, limit=batch_size, plain_text_only=True
            )
        sealed += batch.resealed
        after = batch.next_after
        if after is None:
            break
    if sealed:
        log.info("webhook_secret.plain_text_sealed", count=sealed, key_id=ring.newest_key_id)
    return sealed


# --- events and their fan-out (the outbox) ------------------------------------------


def _event(row: EventRow) -> Event:
    return Event(
        id=row.id,
        type=EventType(row.type),
        timestamp=row.occurred_at,
        data=row.data,
        received_at=row.received_at,
    )


async def publish_event(
    session: AsyncSession,
    *,
    event: EventCreate,
    now: datetime,
    email_enabled: bool,
    trace_context: Mapping[str, str],
    on_commit: OnCommit | None = None,
) -> tuple[Event, bool]:
    """Accept an event once: a retry with the same id and content returns the original.

    Accepting it writes, in the same transaction, a delivery for every subscribed webhook
    endpoint and an email for every customer concerned who registered a contact. The
    W3C `trace_context` it was published in is kept with it for its deliveries.
    """
    created = await repository.insert_event(session, event, trace_context=trace_context)
    row = await repository.get_event(session, event.id)
    assert row is not None, "the event was just inserted or already existed"
    stored = _event(row)
    if not created and (stored.type != event.type or stored.data != event.data):
        raise EventIdReused(f"event {event.id} was already published with other content")
    if created:
        deliveries, emails = await _fan_out(
            session, event=event, now=now, email_enabled=email_enabled
        )
        log.info(
            "event.accepted",
            event_id=str(event.id),
            event_type=event.type.value,
            deliveries=deliveries,
            emails=emails,
        )
        if on_commit is not None and deliveries + emails:
            repository.call_after_commit(session, on_commit)
    return stored, created


def _audience(event: EventCreate) -> dict[str, bool]:
    """Customer id → whether they are only the target, for the customers this event reaches."""
    audience: dict[str, bool] = {}
    for key, target_only in (("source_customer_id", False), ("target_customer_id", True)):
        value = event.data.get(key)
        if value is None:
            continue
        try:
            customer_id = _customer_id.validate_python(value)
        except ValidationError:
            log.warning("event.customer_id_malformed", event_id=str(event.id), key=key)
            continue
        if target_only and event.type not in TARGET_EVENT_TYPES:
            continue
        # A transfer between a customer's own accounts: the source role (everything) wins.
        audience[customer_id] = audience.get(customer_id, True) and target_only
    return audience


async def _fan_out(
    session: AsyncSession, *, event: EventCreate, now: datetime, email_enabled: bool
) -> tuple[int, int]:
    audience = _audience(event)
    if not audience:
        return 0, 0
    endpoints = await repository.subscribed_endpoints(
        session, customer_ids=sorted(audience), event_type=event.type.value
    )
    await repository.insert_deliveries(
        session,
        event_id=event.id,
        endpoint_ids=[endpoint_id for endpoint_id, _ in endpoints],
        now=now,
    )
    emails: list[dict[str, Any]] = []
    if email_enabled and event.type in mail.EMAIL_EVENT_TYPES:
        emails = await _compose_emails(session, event=event, audience=audience, now=now)
        await repository.insert_email_messages(session, emails)
    return len(endpoints), len(emails)


async def _compose_emails(
    session: AsyncSession, *, event: EventCreate, audience: dict[str, bool], now: datetime
) -> list[dict[str, Any]]:
    try:
        data = TransferEventData.model_validate(event.data)
        composed = {
            target_only: mail.compose(event.type, data, to_target=target_only)
            for target_only in set(audience.values())
        }
    except ValidationError:
        # The event is still accepted and delivered to webhooks; only the email is skipped.
        log.warning("event.email_skipped", event_id=str(event.id), reason="data malformed")
        return []
    return [
        {
            "id": uuid.uuid4(),
            "event_id": event.id,
            "customer_id": contact.customer_id,
            "recipient": contact.address,
            "subject": composed[audience[contact.customer_id]].subject,
            "body": composed[audience[contact.customer_id]].body,
            "status": repository.PENDING,
            "attempts_made": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for contact in await repository.email_contacts(session, sorted(audience))
    ]


async def get_event(session: AsyncSession, *, event_id: uuid.UUID) -> Event:
    row = await repository.get_event(session, event_id)
    if row is None:
        raise EventNotFound(f"no event {event_id}")
    return _event(row)


# --- webhook endpoints ---------------------------------------------------------------


def _endpoint(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        customer_id=row.customer_id,
        url=row.url,
        event_types=[EventType(value) for value in row.event_types],
        description=row.description,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event_types(requested: Sequence[EventType]) -> list[str]:
    """Without duplicates, in the order EventType lists them."""
    wanted = set(requested)
    return [member.value for member in EventType if member in wanted]


async def _checked_url(url: str, rules: WebhookRules) -> str:
    try:
        return await check_registration(url, policy=rules.policy, resolver=rules.resolver)
    except TargetRefused as refused:
        raise WebhookUrlNotAllowed(refused.reason) from refused


async def _owned_endpoint(
    session: AsyncSession, *, customer_id: str, endpoint_id: uuid.UUID, for_update: bool = False
) -> WebhookEndpointRow:
    return await _visible_endpoint(
        session, viewer=Viewer(customer_id), endpoint_id=endpoint_id, for_update=for_update
    )


async def _visible_endpoint(
    session: AsyncSession, *, viewer: Viewer, endpoint_id: uuid.UUID, for_update: bool = False
) -> WebhookEndpointRow:
    row = await repository.get_endpoint(
        session, endpoint_id=endpoint_id, customer_id=viewer.customer_id, for_update=for_update
    )
    if row is None:
        # Someone else's endpoint is answered exactly like one that does not exist.
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}")
    return row


async def create_endpoint(
    session: AsyncSession,
    *,
    customer_id: str,
    actor: Actor,
    request: WebhookEndpointCreate,
    rules: WebhookRules,
    now: datetime,
) -> WebhookEndpointCreated:
    """Register an endpoint; the answer carries its signing secret, shown this once."""
    url = await _checked_url(request.url, rules)
    await repository.lock_customer_endpoints(session, customer_id)
    if await repository.count_endpoints(session, customer_id) >= rules.endpoints_per_customer_max:
        raise WebhookEndpointLimitReached(
            f"a customer may register at most {rules.endpoints_per_customer_max} endpoints"
        )
    row = WebhookEndpointRow(
        id=uuid.uuid4(),
        customer_id=customer_id,
        url=url,
        description=request.description,
        event_types=_event_types(request.event_types),
        enabled=True,
        disabled_reason=None,
        created_at=now,
        updated_at=now,
    )
    await repository.insert_endpoint(session, row)
    secret = await _store_new_secret(session, rules.key_ring, endpoint_id=row.id, now=now)
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="webhook_endpoint.created",
            subject_type="webhook_endpoint",
            subject_id=row.id,
            now=now,
            after=_endpoint_summary(row),
        ),
    )
    log.info("webhook_endpoint.created", endpoint_id=str(row.id), customer_id=customer_id)
    return WebhookEndpointCreated(**_endpoint(row).model_dump(), secret=secret)


async def list_endpoints(
    session: AsyncSession, *, customer_id: str, limit: int, cursor: str | None
) -> Page[WebhookEndpoint]:
    page, next_cursor = await keyset_page(
        lambda after, count: repository.list_endpoints(
            session, customer_id=customer_id, after=after, limit=count
        ),
        limit=limit,
        cursor=cursor,
        position_of=lambda row: (row.created_at, row.id),
    )
    return Page[WebhookEndpoint](items=[_endpoint(row) for row in page], next_cursor=next_cursor)


async def get_endpoint(
    session: AsyncSession, *, viewer: Viewer, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    return _endpoint(await _visible_endpoint(session, viewer=viewer, endpoint_id=endpoint_id))


async def update_endpoint(
    session: AsyncSession,
    *,
    customer_id: str,
    actor: Actor,
    endpoint_id: uuid.UUID,
    request: WebhookEndpointUpdate,
    rules: WebhookRules,
    now: datetime,
) -> WebhookEndpoint:
    """Only the fields sent change; a request changing nothing writes nothing."""
    url = None if request.url is None else await _checked_url(request.url, rules)
    row = await _owned_endpoint(
        session, customer_id=customer_id, endpoint_id=endpoint_id, for_update=True
    )
    before = _endpoint_summary(row)
    if url is not None:
        row.url = url
    if request.event_types is not None:
        row.event_types = _event_types(request.event_types)
    if "description" in request.model_fields_set:
        row.description = request.description
    after = _endpoint_summary(row)
    if after == before:
        return _endpoint(row)
    row.updated_at = now
    await repository.flush(session)
    changed = sorted(key for key in after if after[key] != before[key])
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="webhook_endpoint.updated",
            subject_type="webhook_endpoint",
            subject_id=row.id,
            now=now,
            before={key: before[key] for key in changed},
            after={key: after[key] for key in changed},
        ),
    )
    log.info("webhook_endpoint.updated", endpoint_id=str(row.id))
    return _endpoint(row)


async def delete_endpoint(
    session: AsyncSession, *, customer_id: str, actor: Actor, endpoint_id: uuid.UUID, now: datetime
) -> None:
    """Deletes its secrets, deliveries and attempts too; pending deliveries are not sent."""
    row = await _owned_endpoint(
        session, customer_id=customer_id, endpoint_id=endpoint_id, for_update=True
    )
    before = _endpoint_summary(row)
    await repository.delete_endpoint(session, row.id)
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="webhook_endpoint.deleted",
            subject_type="webhook_endpoint",
            subject_id=endpoint_id,
            now=now,
            before=before,
        ),
    )
    log.info("webhook_endpoint.deleted", endpoint_id=str(endpoint_id))


async def set_endpoint_enabled(
    session: AsyncSession,
    *,
    customer_id: str,
    actor: Actor,
    endpoint_id: uuid.UUID,
    enabled: bool,
    now: datetime,
    on_commit: OnCommit | None = None,
) -> WebhookEndpoint:
    """Disabled: no new deliveries, pending ones wait. Enabled again: they resume.
    Asking for the state it is in already changes (and records) nothing."""
    row = await _owned_endpoint(
        session, customer_id=customer_id, endpoint_id=endpoint_id, for_update=True
    )
    if row.enabled != enabled:
        before = {"enabled": row.enabled, "disabled_reason": row.disabled_reason}
        row.enabled = enabled
        row.disabled_reason = None if enabled else DISABLED_BY_OWNER
        row.updated_at = now
        await repository.flush(session)
        await repository.append_audit(
            session,
            change_event(
                actor,
                action="webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled",
                subject_type="webhook_endpoint",
                subject_id=row.id,
                now=now,
                before=before,
                after={"enabled": row.enabled, "disabled_reason": row.disabled_reason},
            ),
        )
        log.info("webhook_endpoint.enabled_changed", endpoint_id=str(row.id), enabled=enabled)
        if enabled and on_commit is not None:
            repository.call_after_commit(session, on_commit)
    return _endpoint(row)


async def rotate_secret(
    session: AsyncSession,
    *,
    customer_id: str,
    actor: Actor,
    endpoint_id: uuid.UUID,
    grace_seconds: int | None,
    rules: WebhookRules,
    now: datetime,
) -> WebhookSecretRotated:
    """A new secret signs from now on; the previous ones keep signing beside it until the
    grace period ends, so receivers can switch without dropping a single request."""
    row = await _owned_endpoint(
        session, customer_id=customer_id, endpoint_id=endpoint_id, for_update=True
    )
    expires_at = now + timedelta(
        seconds=rules.secret_grace_seconds if grace_seconds is None else grace_seconds
    )
    await repository.delete_expired_secrets(session, endpoint_id=row.id, now=now)
    live = await repository.live_secret_rows(session, endpoint_id=row.id, now=now)
    await repository.expire_secrets(
        session, secret_ids=[secret.id for secret in live], expires_at=expires_at
    )
    # The new one plus the newest previous ones; older secrets stop signing at once.
    retired = live[SECRETS_LIVE_MAX - 1 :]
    if retired:
        await repository.expire_secrets(
            session, secret_ids=[secret.id for secret in retired], expires_at=now
        )
    secret = await _store_new_secret(session, rules.key_ring, endpoint_id=row.id, now=now)
    row.updated_at = now
    await repository.flush(session)
    # Counts and times only: the audit trail never holds a secret, old or new.
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="webhook_endpoint.rotated",
            subject_type="webhook_endpoint",
            subject_id=row.id,
            now=now,
            before={"secrets_live": len(live)},
            after={
                "secrets_live": 1 + len(live[: SECRETS_LIVE_MAX - 1]),
                "previous_secrets_expire_at": expires_at.isoformat(),
            },
        ),
    )
    log.info("webhook_endpoint.secret_rotated", endpoint_id=str(row.id))
    return WebhookSecretRotated(
        endpoint_id=row.id, secret=secret, previous_secrets_expire_at=expires_at
    )


# --- deliveries -------------------------------------------------------------------------


def _delivery(row: DeliveryRow, event_type: str) -> Delivery:
    return Delivery(
        id=row.id,
        webhook_id=webhook_signatures.webhook_id(row.id),
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=EventType(event_type),
        status=DeliveryStatus(row.status),
        attempts_made=row.attempts_made,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _attempt(row: DeliveryAttemptRow) -> DeliveryAttempt:
    return DeliveryAttempt(
        number=row.number,
        started_at=row.started_at,
        status_code=row.status_code,
        latency_ms=row.latency_ms,
        outcome=row.outcome,
        error=row.error,
        response_excerpt=row.response_excerpt,
    )


async def list_deliveries(
    session: AsyncSession,
    *,
    viewer: Viewer,
    endpoint_id: uuid.UUID,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> Page[Delivery]:
    """An endpoint's deliveries, newest first; `status=failed` lists what gave up."""
    before = None if cursor is None else decode_position(cursor)
    await _visible_endpoint(session, viewer=viewer, endpoint_id=endpoint_id)
    rows = await repository.list_deliveries(
        session,
        endpoint_id=endpoint_id,
        status=None if status is None else status.value,
        before=before,
        limit=fetch_limit(limit),
    )
    page, next_cursor = cut_page(
        rows, limit=limit, cursor_of=lambda row: encode_position(row[0].created_at, row[0].id)
    )
    return Page[Delivery](
        items=[_delivery(row, event_type) for row, event_type in page], next_cursor=next_cursor
    )


async def get_delivery(
    session: AsyncSession, *, viewer: Viewer, delivery_id: uuid.UUID
) -> DeliveryDetail:
    found = await repository.get_delivery(
        session, delivery_id=delivery_id, customer_id=viewer.customer_id
    )
    if found is None:
        raise DeliveryNotFound(f"no delivery {delivery_id}")
    attempts = await repository.delivery_attempts(
        session, delivery_id=found.row.id, limit=DELIVERY_ATTEMPTS_SHOWN_MAX
    )
    return DeliveryDetail(
        **_delivery(found.row, found.event_type).model_dump(),
        attempts=[_attempt(attempt) for attempt in attempts],
    )


async def redeliver(
    session: AsyncSession,
    *,
    viewer: Viewer,
    actor: Actor,
    delivery_id: uuid.UUID,
    now: datetime,
    on_commit: OnCommit | None = None,
) -> Delivery:
    """Send a finished (failed or succeeded) delivery the viewer sees again, now, with a
    fresh retry schedule and the same `webhook-id`: the same row re-armed, never a copy,
    so asking twice sends it once (the second ask finds it pending)."""
    found = await repository.get_delivery(
        session, delivery_id=delivery_id, customer_id=viewer.customer_id, for_update=True
    )
    if found is None:
        raise DeliveryNotFound(f"no delivery {delivery_id}")
    row = found.row
    if row.status == DeliveryStatus.pending:
        raise DeliveryPending("the delivery is still being attempted; wait for it to finish")
    if not found.endpoint_enabled:
        raise WebhookEndpointDisabled("enable the endpoint before redelivering to it")
    before = {"status": row.status, "attempts_made": row.attempts_made}
    row.status = DeliveryStatus.pending.value
    row.round_attempts_made = 0
    row.next_attempt_at = now
    row.updated_at = now
    await repository.flush(session)
    transfer_id, account_ids = _transfer_of(found.event_data)
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="delivery.redelivered",
            subject_type="delivery",
            subject_id=row.id,
            now=now,
            before=before,
            after={
                "status": row.status,
                "endpoint_id": str(row.endpoint_id),
                "event_id": str(row.event_id),
            },
            transfer_id=transfer_id,
            account_ids=account_ids,
        ),
    )
    log.info("webhook_delivery.redelivery_requested", delivery_id=str(row.id))
    if on_commit is not None:
        repository.call_after_commit(session, on_commit)
    return _delivery(row, found.event_type)


# --- email contacts ---------------------------------------------------------------------


def _contact(row: EmailContactRow) -> EmailContact:
    return EmailContact(customer_id=row.customer_id, address=row.address, updated_at=row.updated_at)


async def put_email_contact(
    session: AsyncSession, *, customer_id: str, actor: Actor, address: str, now: datetime
) -> EmailContact:
    """Where the customer's transfer emails go from now on (emails already composed keep
    their address). The address it has already changes (and records) nothing."""
    await repository.lock_customer_contact(session, customer_id)
    existing = await repository.get_email_contact(session, customer_id)
    if existing is not None and existing.address == address:
        return _contact(existing)
    before = None if existing is None else {"address": existing.address}
    row = await repository.upsert_email_contact(
        session, customer_id=customer_id, address=address, now=now
    )
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="email_contact.changed",
            subject_type="email_contact",
            subject_id=customer_id,
            now=now,
            before=before,
            after={"address": row.address},
        ),
    )
    log.info("email_contact.saved", customer_id=customer_id)
    return _contact(row)


async def get_email_contact(session: AsyncSession, *, customer_id: str) -> EmailContact:
    row = await repository.get_email_contact(session, customer_id)
    if row is None:
        raise EmailContactNotFound(f"customer {customer_id} has no email contact")
    return _contact(row)


async def delete_email_contact(
    session: AsyncSession, *, customer_id: str, actor: Actor, now: datetime
) -> None:
    await repository.lock_customer_contact(session, customer_id)
    address = await repository.delete_email_contact(session, customer_id)
    if address is None:
        raise EmailContactNotFound(f"customer {customer_id} has no email contact")
    await repository.append_audit(
        session,
        change_event(
            actor,
            action="email_contact.deleted",
            subject_type="email_contact",
            subject_id=customer_id,
            now=now,
            before={"address": address},
        ),
    )
    log.info("email_contact.deleted", customer_id=customer_id)
