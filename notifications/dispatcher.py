"""The dispatcher: sends what the outbox holds — webhook deliveries and emails — and retries.

It runs as a background task in the service's lifespan, any number of replicas side by
side: each pass leases a bounded batch of due rows (SKIP LOCKED, so replicas take
disjoint rows), sends them with bounded concurrency, and records each result fenced by
its lease. Every time it reads comes from the injected clock, so tests move time at will.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.notifications import ROUTING_DATA_KEYS, EventType, WebhookPayload
from notifications import mail, repository, schedule, service, signing
from notifications.models import DeliveryAttemptRow, EmailMessageRow
from notifications.ssrf import TargetRefused

log = structlog.get_logger()

Clock = Callable[[], datetime]

RESPONSE_EXCERPT_BYTES_MAX: Final = 1024
ERROR_LENGTH_MAX: Final = 300
USER_AGENT: Final = "Sagabank-Webhooks/1.0"
EMAIL_ATTEMPTS_MAX: Final = 5
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


async def _excerpt(response: httpx.Response) -> str | None:
    """The first bytes of the answer, read raw (never decompressed) and no further."""
    collected = bytearray()
    async for chunk in response.aiter_raw():
        collected += chunk[: RESPONSE_EXCERPT_BYTES_MAX - len(collected)]
        if len(collected) >= RESPONSE_EXCERPT_BYTES_MAX:
            break
    return collected.decode("utf-8", errors="replace") or None


class Dispatcher:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        options: DispatcherOptions,
        clock: Clock,
        smtp: mail.SmtpServer | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
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
        return webhooks + emails

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

    # --- webhooks -----------------------------------------------------------------------

    async def _dispatch_webhooks(self) -> int:
        now = self._clock()
        lease_token = uuid.uuid4()
        async with self._sessions() as session, session.begin():
            claims = await repository.claim_deliveries(
                session,
                now=now,
                lease_token=lease_token,
                lease_expires_at=now + timedelta(seconds=self._options.lease_seconds),
                limit=self._options.batch_size,
            )
            secrets = await repository.live_secrets(
                session, endpoint_ids=sorted({claim.endpoint_id for claim in claims}), now=now
            )
        if claims:
            await self._bounded(
                [
                    self._attempt(claim, lease_token, secrets.get(claim.endpoint_id, []))
                    for claim in claims
                ]
            )
        return len(claims)

    async def _attempt(
        self, claim: repository.ClaimedDelivery, lease_token: uuid.UUID, secrets: Sequence[str]
    ) -> None:
        started_at = self._clock()
        message_id = signing.webhook_id(claim.delivery_id)
        payload = WebhookPayload(
            type=EventType(claim.event_type),
            timestamp=claim.occurred_at,
            data=_public_data(claim.data),
        )
        body = payload.model_dump_json().encode()
        timestamp_seconds = int(started_at.timestamp())
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp_seconds),
            "webhook-signature": signing.signature_header(
                secrets, message_id=message_id, timestamp_seconds=timestamp_seconds, body=body
            ),
        }
        status_code: int | None = None
        retry_after: str | None = None
        excerpt: str | None = None
        error: str | None = None
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self._options.webhook_timeout_seconds):
                async with self._client.stream(
                    "POST", claim.url, content=body, headers=headers
                ) as response:
                    status_code = response.status_code
                    retry_after = response.headers.get("retry-after")
                    excerpt = await _excerpt(response)
        except TargetRefused as refused:
            error = f"refused by the SSRF guard: {refused.reason}"
        except TimeoutError:
            error = f"no answer within {self._options.webhook_timeout_seconds:g} s"
        except Exception as failure:
            # Whatever went wrong (network, TLS, a URL httpx will not parse) is this
            # attempt's outcome: logged and retried on schedule, never a stuck delivery.
            error = f"{type(failure).__name__}: {failure}"
        latency_ms = round((time.perf_counter() - began) * 1000)

        finished_at = self._clock()
        verdict = schedule.verdict(status_code)
        next_attempt_at: datetime | None = None
        if verdict is schedule.Verdict.succeeded:
            status = "succeeded"
        elif verdict is schedule.Verdict.gone:
            status = "failed"
        else:
            delay_seconds = schedule.next_delay_seconds(
                claim.round_attempts_made + 1,
                retry_after_seconds=schedule.parse_retry_after(
                    status_code, retry_after, now=finished_at
                ),
                rng=self._rng,
            )
            if delay_seconds is None:
                status = "failed"
            else:
                status = "pending"
                next_attempt_at = finished_at + timedelta(seconds=delay_seconds)
        attempt = DeliveryAttemptRow(
            id=uuid.uuid4(),
            delivery_id=claim.delivery_id,
            number=claim.number,
            started_at=started_at,
            status_code=status_code,
            latency_ms=latency_ms,
            outcome="failed" if verdict is schedule.Verdict.retry else verdict.value,
            error=None if error is None else error[:ERROR_LENGTH_MAX],
            response_excerpt=excerpt,
        )
        disabled = False
        async with self._sessions() as session, session.begin():
            recorded = await repository.record_attempt(
                session,
                claim=claim,
                lease_token=lease_token,
                attempt=attempt,
                status=status,
                next_attempt_at=next_attempt_at,
                now=finished_at,
            )
            if recorded and verdict is schedule.Verdict.gone:
                # The receiver said the endpoint is gone: stop sending to it, and record
                # that the system (not its owner) did so, in the same transaction.
                disabled = await repository.disable_endpoint(
                    session, endpoint_id=claim.endpoint_id, reason="gone", now=finished_at
                )
                if disabled:
                    await repository.append_audit(
                        session,
                        service.endpoint_disabled_as_gone_event(
                            endpoint_id=claim.endpoint_id,
                            delivery_id=claim.delivery_id,
                            event_id=claim.event_id,
                            now=finished_at,
                        ),
                    )
        log.info(
            "webhook.attempt" if recorded else "webhook.attempt_discarded",
            delivery_id=str(claim.delivery_id),
            endpoint_id=str(claim.endpoint_id),
            webhook_id=message_id,
            event_type=claim.event_type,
            attempt=claim.number,
            status_code=status_code,
            latency_ms=latency_ms,
            outcome=attempt.outcome,
            error=attempt.error,
            delivery_status=status,
            next_attempt_at=None if next_attempt_at is None else next_attempt_at.isoformat(),
        )
        if disabled:
            log.warning(
                "webhook_endpoint.disabled", endpoint_id=str(claim.endpoint_id), reason="gone"
            )

    # --- email --------------------------------------------------------------------------

    async def _dispatch_emails(self) -> int:
        now = self._clock()
        lease_token = uuid.uuid4()
        async with self._sessions() as session, session.begin():
            messages = await repository.claim_emails(
                session,
                now=now,
                lease_token=lease_token,
                lease_expires_at=now + timedelta(seconds=self._options.lease_seconds),
                limit=self._options.batch_size,
            )
        if messages:
            await self._bounded([self._send_email(message, lease_token) for message in messages])
        return len(messages)

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
        elif error.permanent or message.attempts_made >= EMAIL_ATTEMPTS_MAX:
            status = "failed"
        else:
            status = "pending"
            delay_seconds = schedule.next_delay_seconds(
                message.attempts_made, retry_after_seconds=None, rng=self._rng
            )
            assert delay_seconds is not None, "EMAIL_ATTEMPTS_MAX is below the schedule's length"
            next_attempt_at = finished_at + timedelta(seconds=delay_seconds)
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
