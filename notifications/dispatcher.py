"""The dispatcher: sends what the outbox holds — webhook deliveries and emails — and retries.

It runs as a background task in the service's lifespan, any number of replicas side by
side: each pass leases a bounded batch of due rows (SKIP LOCKED, so replicas take
disjoint rows), sends them with bounded concurrency, and records each result fenced by
its lease. Every time it reads comes from the injected clock, so tests move time at will.

An attempt counts when it is claimed. One that never records a result (its sender died,
or hung past the lease) is settled by the next pass that finds its lease expired: logged
as an abandoned attempt, the schedule's next delay applies, and when the schedule is used
up the delivery (or email) has failed. So a payload that kills its sender ends `failed`
instead of being sent again at every lease expiry.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
import structlog
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.notifications import ROUTING_DATA_KEYS, EventType, WebhookPayload
from kit.db import after_commit
from kit.resources import Clock
from kit.sealing import KeyRing
from kit.tracing import current_trace_context, span_continuing
from notifications import mail, metrics, repository, schedule, service, webhook_signatures
from notifications.models import DeliveryAttemptRow, EmailMessageRow
from notifications.ssrf import TargetRefused

log = structlog.get_logger()


RESPONSE_EXCERPT_BYTES_MAX: Final = 1024
ERROR_LENGTH_MAX: Final = 300
USER_AGENT: Final = "Sagabank-Webhooks/1.0"
EMAIL_ATTEMPTS_MAX: Final = 5
# An attempt whose lease expired before it recorded a result, as its log shows it.
ABANDONED_OUTCOME: Final = "abandoned"
ABANDONED_ERROR: Final = "the attempt did not finish: its lease expired"
# After a pass that fails (the database away), wait longer each time, up to this factor.
BACKOFF_FACTOR_MAX: Final = 30


@dataclass(frozen=True)
class DispatcherOptions:
    batch_size: int
    concurrency: int
    poll_interval_seconds: float
    # How long a claim is exclusive; must outlast the longest attempt.
    lease_seconds: float
    webhook_timeout_seconds: float
    email_timeout_seconds: float

    def __post_init__(self) -> None:
        assert self.batch_size > 0
        assert self.concurrency > 0
        assert self.lease_seconds > self.webhook_timeout_seconds
        assert self.lease_seconds > self.email_timeout_seconds


def _public_data(data: dict[str, object]) -> dict[str, object]:
    """The event data a receiver sees: routing keys (customer ids) stay inside the bank."""
    return {key: value for key, value in data.items() if key not in ROUTING_DATA_KEYS}


def webhook_body(event_type: EventType, *, occurred_at: datetime, data: dict[str, object]) -> bytes:
    """The JSON body of an event's webhook request (its schema: notifications/webhook_catalogue)."""
    payload = WebhookPayload(type=event_type, timestamp=occurred_at, data=_public_data(data))
    return payload.model_dump_json().encode()


async def _excerpt(response: httpx.Response) -> str | None:
    """The first bytes of the answer, read raw (never decompressed) and no further."""
    collected = bytearray()
    async for chunk in response.aiter_raw():
        collected += chunk[: RESPONSE_EXCERPT_BYTES_MAX - len(collected)]
        if len(collected) >= RESPONSE_EXCERPT_BYTES_MAX:
            break
    return collected.decode("utf-8", errors="replace") or None


def _count_abandoned_attempt() -> None:
    metrics.WEBHOOK_DELIVERY_ATTEMPTS.labels(outcome=ABANDONED_OUTCOME).inc()


async def _disable_as_gone(
    session: AsyncSession, claim: repository.ClaimedDelivery, *, now: datetime
) -> bool:
    """The receiver said the endpoint is gone: stop sending to it, and record that the
    system (not its owner) did so, in the caller's transaction; False if disabled already."""
    disabled = await repository.disable_endpoint(
        session, endpoint_id=claim.endpoint_id, reason="gone", now=now
    )
    if disabled:
        await repository.append_audit(
            session,
            service.endpoint_disabled_as_gone_event(
                endpoint_id=claim.endpoint_id,
                delivery_id=claim.delivery_id,
                event_id=claim.event_id,
                now=now,
            ),
        )
    return disabled


@dataclass
class _Answer:
    """What one webhook request came back with; `error` when it got no answer."""

    status_code: int | None = None
    retry_after: str | None = None
    excerpt: str | None = None
    error: str | None = None
    latency_ms: int = 0


class Dispatcher:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        options: DispatcherOptions,
        clock: Clock,
        key_ring: KeyRing,
        smtp: mail.SmtpServer | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._key_ring = key_ring
        self._client = client
        self._options = options
        self._clock = clock
        self._smtp = smtp
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def wake(self) -> None:
        """Something new is due: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        assert self._task is None, "started once"
        self._task = asyncio.create_task(self._run(), name="notifications-dispatcher")

    async def stop(self, *, timeout_seconds: float) -> None:
        """Finish the pass in flight (bounded), then stop. A pass cut short loses nothing:
        its leases expire and another pass sends those rows again, same webhook-id."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_seconds)
        except TimeoutError:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            try:
                handled = await self.run_once()
                failures = 0
            except Exception:
                handled = 0
                failures += 1
                log.exception("dispatcher.pass_failed", failures=failures)
            if handled or self._stopping:
                continue  # more may be due; a pass that found nothing waits below
            backoff = min(2 ** min(failures, 5), BACKOFF_FACTOR_MAX)
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), self._options.poll_interval_seconds * backoff
                )

    async def run_once(self) -> int:
        """One pass: send what is due now (at most a batch of each kind); how many were."""
        webhooks = await self._dispatch_webhooks()
        emails = await self._dispatch_emails() if self._smtp is not None else 0
        await self._report_backlog()
        return webhooks + emails

    async def _report_backlog(self) -> None:
        """The outbox gauges, as this pass leaves the outbox."""
        async with self._sessions() as session, session.begin():
            backlog = await repository.outbox_backlog(session)
        metrics.OUTBOX_PENDING_EVENTS.set(backlog.pending_events)
        oldest_at = backlog.oldest_pending_at
        age_seconds = 0.0 if oldest_at is None else (self._clock() - oldest_at).total_seconds()
        metrics.OUTBOX_OLDEST_PENDING_AGE.set(max(age_seconds, 0.0))

    async def _bounded(self, jobs: Sequence[Coroutine[None, None, None]]) -> None:
        """Run the jobs, at most `concurrency` at a time; one failing stops none of the others."""
        semaphore = asyncio.Semaphore(self._options.concurrency)

        async def run(job: Coroutine[None, None, None]) -> None:
            async with semaphore:
                await job

        results = await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("dispatcher.job_failed", error=repr(result)[:ERROR_LENGTH_MAX])

    def _after_failure(
        self, failed_in_round: int, *, retry_after_seconds: float | None, finished_at: datetime
    ) -> tuple[str, datetime | None]:
        """A delivery's status and next attempt after the round's `failed_in_round`-th
        failed attempt: pending on the schedule, or failed once the schedule is used up."""
        delay_seconds = schedule.next_delay_seconds(
            failed_in_round, retry_after_seconds=retry_after_seconds, rng=self._rng
        )
        if delay_seconds is None:
            return "failed", None
        return "pending", finished_at + timedelta(seconds=delay_seconds)

    # --- webhooks -----------------------------------------------------------------------

    async def _dispatch_webhooks(self) -> int:
        """Settle the abandoned attempts, then claim what is due; how many of both."""
        now = self._clock()
        lease_token = uuid.uuid4()
        async with self._sessions() as session, session.begin():
            settled = await self._settle_abandoned_deliveries(session, now=now)
            claims = await repository.claim_deliveries(
                session,
                now=now,
                lease_token=lease_token,
                lease_expires_at=now + timedelta(seconds=self._options.lease_seconds),
                limit=self._options.batch_size,
            )
            stored = await repository.live_secrets(
                session, endpoint_ids=sorted({claim.endpoint_id for claim in claims}), now=now
            )
        secrets = {
            endpoint_id: service.opened_secrets(self._key_ring, endpoint_secrets)
            for endpoint_id, endpoint_secrets in stored.items()
        }
        if claims:
            await self._bounded(
                [
                    self._attempt(claim, lease_token, secrets.get(claim.endpoint_id, []))
                    for claim in claims
                ]
            )
        return settled + len(claims)

    async def _settle_abandoned_deliveries(self, session: AsyncSession, *, now: datetime) -> int:
        """Log each attempt whose lease expired unrecorded as abandoned, a failed attempt of
        its round (counted when claimed), and move its delivery on as after any failure:
        the next attempt waits the schedule's delay from now, not from the lease's end."""
        abandoned = await repository.lock_abandoned_deliveries(
            session, now=now, limit=self._options.batch_size
        )
        for delivery in abandoned:
            status, next_attempt_at = self._after_failure(
                delivery.round_number, retry_after_seconds=None, finished_at=now
            )
            held = delivery.lease_expires_at - delivery.leased_at
            attempt = DeliveryAttemptRow(
                id=uuid.uuid4(),
                delivery_id=delivery.delivery_id,
                number=delivery.number,
                started_at=delivery.leased_at,
                status_code=None,
                # No answer was timed: how long the attempt held its lease, unfinished.
                latency_ms=max(round(held.total_seconds() * 1000), 0),
                outcome=ABANDONED_OUTCOME,
                error=ABANDONED_ERROR,
                response_excerpt=None,
            )
            recorded = await repository.record_attempt(
                session,
                lease_token=delivery.lease_token,
                attempt=attempt,
                status=status,
                next_attempt_at=next_attempt_at,
                now=now,
            )
            assert recorded, "the row is locked and still holds the expired lease"
            after_commit(session, _count_abandoned_attempt)
            log.warning(
                "webhook.attempt_abandoned",
                delivery_id=str(delivery.delivery_id),
                endpoint_id=str(delivery.endpoint_id),
                attempt=delivery.number,
                delivery_status=status,
                next_attempt_at=None if next_attempt_at is None else next_attempt_at.isoformat(),
            )
        return len(abandoned)

    async def _post(
        self, claim: repository.ClaimedDelivery, secrets: Sequence[str], *, started_at: datetime
    ) -> _Answer:
        """Send the signed event once, bounded by the webhook timeout; what came back."""
        if not secrets:
            # Never sent unsigned: the attempt fails and is retried on schedule, so a key
            # restored to the ring lets the delivery through.
            return _Answer(error="no signing secret of this endpoint opens under the key ring")
        message_id = webhook_signatures.webhook_id(claim.delivery_id)
        body = webhook_body(
            EventType(claim.event_type), occurred_at=claim.occurred_at, data=claim.data
        )
        timestamp_seconds = int(started_at.timestamp())
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp_seconds),
            "webhook-signature": webhook_signatures.signature_header(
                secrets, message_id=message_id, timestamp_seconds=timestamp_seconds, body=body
            ),
        }
        # The attempt's span, as W3C headers only: nothing else of ours reaches the endpoint.
        headers.update(current_trace_context())
        answer = _Answer()
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self._options.webhook_timeout_seconds):
                async with self._client.stream(
                    "POST", claim.url, content=body, headers=headers
                ) as response:
                    answer.status_code = response.status_code
                    answer.retry_after = response.headers.get("retry-after")
                    answer.excerpt = await _excerpt(response)
        except TargetRefused as refused:
            answer.error = f"refused by the SSRF guard: {refused.reason}"
        except TimeoutError:
            answer.error = f"no answer within {self._options.webhook_timeout_seconds:g} s"
        except Exception as failure:
            # Whatever went wrong (network, TLS, a URL httpx will not parse) is this
            # attempt's outcome: logged and retried on schedule, never a stuck delivery.
            answer.error = f"{type(failure).__name__}: {failure}"
        answer.latency_ms = round((time.perf_counter() - began) * 1000)
        return answer

    async def _attempt(
        self, claim: repository.ClaimedDelivery, lease_token: uuid.UUID, secrets: Sequence[str]
    ) -> None:
        """One attempt, a span of the trace its event was published in (a client span: the
        endpoint's answer is its outcome), so every delivery, redeliveries too, joins it."""
        with span_continuing(
            "webhook.deliver",
            claim.trace_context,
            kind=SpanKind.CLIENT,
            attributes={
                "sagabank.delivery_id": str(claim.delivery_id),
                "sagabank.event_type": claim.event_type,
                "sagabank.attempt": claim.number,
            },
        ) as span:
            status_code = await self._attempt_in_span(claim, lease_token, secrets)
            if status_code is not None:
                span.set_attribute("http.response.status_code", status_code)

    async def _attempt_in_span(
        self, claim: repository.ClaimedDelivery, lease_token: uuid.UUID, secrets: Sequence[str]
    ) -> int | None:
        started_at = self._clock()
        answer = await self._post(claim, secrets, started_at=started_at)
        status_code, error = answer.status_code, answer.error
        finished_at = self._clock()
        verdict = schedule.verdict(status_code)
        next_attempt_at: datetime | None = None
        if verdict is schedule.Verdict.succeeded:
            status = "succeeded"
        elif verdict is schedule.Verdict.gone:
            status = "failed"
        else:
            status, next_attempt_at = self._after_failure(
                claim.round_number,
                retry_after_seconds=schedule.parse_retry_after(
                    status_code, answer.retry_after, now=finished_at
                ),
                finished_at=finished_at,
            )
        attempt = DeliveryAttemptRow(
            id=uuid.uuid4(),
            delivery_id=claim.delivery_id,
            number=claim.number,
            started_at=started_at,
            status_code=status_code,
            latency_ms=answer.latency_ms,
            outcome="failed" if verdict is schedule.Verdict.retry else verdict.value,
            error=None if error is None else error[:ERROR_LENGTH_MAX],
            response_excerpt=answer.excerpt,
        )
        disabled = False
        async with self._sessions() as session, session.begin():
            recorded = await repository.record_attempt(
                session,
                lease_token=lease_token,
                attempt=attempt,
                status=status,
                next_attempt_at=next_attempt_at,
                now=finished_at,
            )
            if recorded and verdict is schedule.Verdict.gone:
                disabled = await _disable_as_gone(session, claim, now=finished_at)
        if recorded:
            # Committed: a lease lost to another dispatcher records, and counts, nothing.
            metrics.WEBHOOK_DELIVERY_ATTEMPTS.labels(outcome=attempt.outcome).inc()
        if status_code is not None or error is not None:
            metrics.WEBHOOK_DELIVERY_DURATION.observe(answer.latency_ms / 1000)
        log.info(
            "webhook.attempt" if recorded else "webhook.attempt_discarded",
            delivery_id=str(claim.delivery_id),
            endpoint_id=str(claim.endpoint_id),
            webhook_id=webhook_signatures.webhook_id(claim.delivery_id),
            event_type=claim.event_type,
            attempt=claim.number,
            status_code=status_code,
            latency_ms=answer.latency_ms,
            outcome=attempt.outcome,
            error=attempt.error,
            delivery_status=status,
            next_attempt_at=None if next_attempt_at is None else next_attempt_at.isoformat(),
        )
        if disabled:
            log.warning(
                "webhook_endpoint.disabled", endpoint_id=str(claim.endpoint_id), reason="gone"
            )
        return status_code

    # --- email --------------------------------------------------------------------------

    def _email_after_failure(
        self, attempts_made: int, *, permanent: bool, finished_at: datetime
    ) -> tuple[str, datetime | None]:
        """A message's status and next attempt after its `attempts_made`-th attempt failed."""
        if permanent or attempts_made >= EMAIL_ATTEMPTS_MAX:
            return "failed", None
        delay_seconds = schedule.next_delay_seconds(
            attempts_made, retry_after_seconds=None, rng=self._rng
        )
        assert delay_seconds is not None, "EMAIL_ATTEMPTS_MAX is below the schedule's length"
        return "pending", finished_at + timedelta(seconds=delay_seconds)

    async def _dispatch_emails(self) -> int:
        """Settle the abandoned attempts, then claim what is due; how many of both."""
        now = self._clock()
        lease_token = uuid.uuid4()
        async with self._sessions() as session, session.begin():
            settled = await self._settle_abandoned_emails(session, now=now)
            messages = await repository.claim_emails(
                session,
                now=now,
                lease_token=lease_token,
                lease_expires_at=now + timedelta(seconds=self._options.lease_seconds),
                limit=self._options.batch_size,
            )
        if messages:
            await self._bounded([self._send_email(message, lease_token) for message in messages])
        return settled + len(messages)

    async def _settle_abandoned_emails(self, session: AsyncSession, *, now: datetime) -> int:
        """Each message whose lease expired unrecorded had a failed attempt (counted when
        claimed): retried on the schedule from now, failed after EMAIL_ATTEMPTS_MAX."""
        abandoned = await repository.lock_abandoned_emails(
            session, now=now, limit=self._options.batch_size
        )
        for message in abandoned:
            assert message.lease_token is not None
            status, next_attempt_at = self._email_after_failure(
                message.attempts_made, permanent=False, finished_at=now
            )
            recorded = await repository.record_email_result(
                session,
                message_id=message.id,
                lease_token=message.lease_token,
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=ABANDONED_ERROR,
                sent_at=None,
                now=now,
            )
            assert recorded, "the row is locked and still holds the expired lease"
            after_commit(session, _count_abandoned_attempt)
            log.warning(
                "email.attempt_abandoned",
                email_id=str(message.id),
                event_id=str(message.event_id),
                attempt=message.attempts_made,
                status=status,
            )
        return len(abandoned)

    async def _send_email(self, message: EmailMessageRow, lease_token: uuid.UUID) -> None:
        assert self._smtp is not None, "emails are claimed only with an SMTP server"
        started_at = self._clock()
        error: mail.SendFailed | None = None
        try:
            async with asyncio.timeout(self._options.email_timeout_seconds):
                await mail.send(
                    self._smtp,
                    mail.build_message(
                        self._smtp,
                        message_id=message.id,
                        recipient=message.recipient,
                        subject=message.subject,
                        body=message.body,
                        now=started_at,
                    ),
                )
        except mail.SendFailed as failed:
            error = failed
        except TimeoutError:
            error = mail.SendFailed("the SMTP server did not answer in time", permanent=False)
        except Exception as failure:
            # Anything else is this attempt's outcome too: retried, never a stuck message.
            error = mail.SendFailed(f"{type(failure).__name__}: {failure}", permanent=False)
        finished_at = self._clock()
        next_attempt_at: datetime | None = None
        if error is None:
            status = "sent"
        else:
            status, next_attempt_at = self._email_after_failure(
                message.attempts_made, permanent=error.permanent, finished_at=finished_at
            )
        async with self._sessions() as session, session.begin():
            recorded = await repository.record_email_result(
                session,
                message_id=message.id,
                lease_token=lease_token,
                status=status,
                next_attempt_at=next_attempt_at,
                last_error=None if error is None else error.reason,
                sent_at=finished_at if error is None else None,
                now=finished_at,
            )
        log.info(
            "email.attempt" if recorded else "email.attempt_discarded",
            email_id=str(message.id),
            event_id=str(message.event_id),
            customer_id=message.customer_id,
            attempt=message.attempts_made,
            status=status,
            error=None if error is None else error.reason,
        )
