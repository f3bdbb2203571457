"""Transfer emails: composed from an event when it is accepted, sent over SMTP (aiosmtplib)."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final, Literal

import aiosmtplib

from contracts.money import Money
from contracts.notifications import EventType, TransferEventData
from notifications import metrics

SUBJECT_LENGTH_MAX: Final = 200
ERROR_LENGTH_MAX: Final = 300
MESSAGE_ID_DOMAIN: Final = "notifications.sagabank"

# What the customer who sent the money reads, per outcome. `transfer.created` and
# `transfer.in_review` stay webhook-only: email is for outcomes a person acts on.
_SOURCE_OUTCOMES: Final[dict[EventType, str]] = {
    EventType.transfer_completed: "has completed",
    EventType.transfer_rejected: "was rejected",
    EventType.transfer_declined: "was declined",
    EventType.transfer_expired: "expired before it was reviewed",
    EventType.transfer_cancelled: "was cancelled",
}
EMAIL_EVENT_TYPES: Final = frozenset(_SOURCE_OUTCOMES)

SmtpSecurity = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class ComposedEmail:
    subject: str
    body: str


def compose(event_type: EventType, data: TransferEventData, *, to_target: bool) -> ComposedEmail:
    """The message to the source customer (every outcome) or the target one (completed)."""
    assert event_type in EMAIL_EVENT_TYPES, "only outcomes are emailed"
    assert not to_target or event_type is EventType.transfer_completed, "targets learn arrivals"
    amount = Money(amount_minor=data.amount_minor, currency=data.currency).format()
    if to_target:
        subject = f"You received {amount}"
        headline = f"A transfer of {amount} to your account has arrived."
    else:
        outcome = _SOURCE_OUTCOMES[event_type]
        subject = f"Your transfer of {amount} {outcome}"
        headline = f"Your transfer of {amount} {outcome}."
    lines = [
        "Hello,",
        "",
        headline,
        "",
        f"Transfer:     {data.transfer_id}",
        f"Amount:       {amount}",
        f"From account: {data.source_account_id}",
        f"To account:   {data.target_account_id}",
        f"Status:       {data.status}",
    ]
    if data.failure_reason and not to_target:
        lines.append(f"Reason:       {data.failure_reason}")
    lines += ["", "Sagabank"]
    return ComposedEmail(subject=subject[:SUBJECT_LENGTH_MAX], body="\n".join(lines) + "\n")


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    sender: str
    security: SmtpSecurity
    timeout_seconds: float
    username: str | None = None
    password: str | None = None


class SendFailed(Exception):
    """The server did not take the message; `permanent` when retrying cannot help (5xx)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason[:ERROR_LENGTH_MAX]
        self.permanent = permanent


def build_message(
    server: SmtpServer,
    *,
    message_id: uuid.UUID,
    recipient: str,
    subject: str,
    body: str,
    now: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = server.sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    # Stable across retries, so a mail client can drop a copy sent twice after a crash.
    message["Message-ID"] = f"<{message_id}@{MESSAGE_ID_DOMAIN}>"
    message.set_content(body)
    return message


async def send(server: SmtpServer, message: EmailMessage) -> None:
    """Hand the message to the SMTP server, counted in sagabank_emails_total by outcome; an
    attempt that ends otherwise (refused, timed out, cancelled) counts as failed."""
    try:
        await _send(server, message)
    except BaseException:
        metrics.EMAILS.labels(outcome="failed").inc()
        raise
    metrics.EMAILS.labels(outcome="sent").inc()


async def _send(server: SmtpServer, message: EmailMessage) -> None:
    try:
        await aiosmtplib.send(
            message,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.security == "tls",
            start_tls=server.security == "starttls",
            timeout=server.timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        raise SendFailed(f"recipient refused: {error}", permanent=True) from error
    except aiosmtplib.SMTPResponseException as error:
        permanent = 500 <= error.code < 600
        raise SendFailed(f"{error.code} {error.message}", permanent=permanent) from error
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise SendFailed(f"{type(error).__name__}: {error}", permanent=False) from error
