"""Email: a contact per customer, transfer outcomes composed with the event (outbox) and
sent over SMTP to a real local server that records what it receives."""

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select

from contracts.notifications import EventType, TransferEventData
from kit.testing import app_client, assert_problem
from notifications import mail
from notifications.dispatcher import EMAIL_ATTEMPTS_MAX
from notifications.models import EmailMessageRow
from notifications.tests.conftest import AppFactory
from notifications.tests.support import (
    Clock,
    SenderDied,
    as_customer,
    as_worker,
    dispatcher_of,
    transfer_event,
    wait_until,
)


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted"

    def to(self, address: str) -> EmailMessage:
        [message] = [message for message in self.messages if message["To"] == address]
        return message


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def smtp_server(port: int) -> AsyncIterator[Mailbox]:
    """A real SMTP server on 127.0.0.1:`port`, stopped on exit, also on failure."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield mailbox
    finally:
        await asyncio.to_thread(controller.stop)


def email_settings(port: int) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_timeout_seconds": 2,
        "email_from": "Sagabank <noreply@sagabank.test>",
        "dispatcher_enabled": False,
    }


async def put_contact(client: httpx.AsyncClient, customer_id: str, address: str) -> None:
    response = await client.put(
        "/v1/email-contact", headers=as_customer(customer_id), json={"address": address}
    )
    assert response.status_code == 200, response.text


async def stored_emails(app: FastAPI) -> list[EmailMessageRow]:
    async with app.state.database.sessions() as session:
        rows = await session.execute(select(EmailMessageRow).order_by(EmailMessageRow.recipient))
        return list(rows.scalars().all())


class TestEmailContact:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        await put_contact(client, "alice", "alice@example.test")
        await put_contact(client, "alice", "alice@work.example.test")
        response = await client.get("/v1/email-contact", headers=as_customer("alice"))
        assert response.status_code == 200
        assert response.json()["address"] == "alice@work.example.test"
        deleted = await client.delete("/v1/email-contact", headers=as_customer("alice"))
        assert deleted.status_code == 204
        missing = await client.get("/v1/email-contact", headers=as_customer("alice"))
        assert_problem(missing, 404, "email-contact-not-found")

    async def test_each_customer_sees_only_their_own(self, client: httpx.AsyncClient) -> None:
        await put_contact(client, "alice", "alice@example.test")
        response = await client.get("/v1/email-contact", headers=as_customer("mallory"))
        assert_problem(response, 404, "email-contact-not-found")

    @pytest.mark.parametrize(
        "address",
        [
            "not-an-address",
            "a@b",
            "alice@example.test\r\nBcc: all@example.test",
            "a" * 250 + "@x.io",
        ],
    )
    async def test_malformed_address(self, client: httpx.AsyncClient, address: str) -> None:
        response = await client.put(
            "/v1/email-contact", headers=as_customer("alice"), json={"address": address}
        )
        assert_problem(response, 422, "invalid-request")


class TestCompose:
    def data(self, **overrides: Any) -> TransferEventData:
        event = transfer_event(**overrides)
        return TransferEventData.model_validate(event["data"])

    @pytest.mark.parametrize(
        ("amount_minor", "currency", "formatted"),
        [
            (2550, "EUR", "25.50 EUR"),
            (5, "USD", "0.05 USD"),
            (1500, "JPY", "1500 JPY"),
            (1234, "KWD", "1.234 KWD"),
        ],
    )
    def test_amount_in_the_currency_s_own_units(
        self, amount_minor: int, currency: str, formatted: str
    ) -> None:
        data = self.data(amount_minor=amount_minor, currency=currency)
        composed = mail.compose(EventType.transfer_completed, data, to_target=False)
        assert composed.subject == f"Your transfer of {formatted} has completed"
        assert f"Amount:       {formatted}" in composed.body

    def test_states_accounts_transfer_and_reason(self) -> None:
        data = self.data(event_type="transfer.declined", failure_reason="fraud score 91")
        composed = mail.compose(EventType.transfer_declined, data, to_target=False)
        assert str(data.transfer_id) in composed.body
        assert f"From account: {data.source_account_id}" in composed.body
        assert f"To account:   {data.target_account_id}" in composed.body
        assert "Reason:       fraud score 91" in composed.body

    def test_the_target_learns_of_the_arrival(self) -> None:
        composed = mail.compose(EventType.transfer_completed, self.data(), to_target=True)
        assert composed.subject == "You received 25.50 EUR"


def _emails(outcome: str) -> float:
    return REGISTRY.get_sample_value("sagabank_emails_total", {"outcome": outcome}) or 0.0


class TestEmailMetrics:
    async def test_sent_and_failed_are_counted_where_mail_is_sent(self) -> None:
        port = free_loopback_port()
        server = mail.SmtpServer(
            host="127.0.0.1",
            port=port,
            security="none",
            username=None,
            password=None,
            timeout_seconds=2,
            sender="noreply@sagabank.test",
        )
        message = mail.build_message(
            server,
            message_id=uuid.uuid4(),
            recipient="alice@example.test",
            subject="hello",
            body="hello",
            now=datetime.now(UTC),
        )
        sent_before, failed_before = _emails("sent"), _emails("failed")
        async with smtp_server(port) as mailbox:
            await mail.send(server, message)
        assert len(mailbox.messages) == 1
        with pytest.raises(mail.SendFailed):
            await mail.send(server, message)  # the server is gone
        assert (_emails("sent") - sent_before, _emails("failed") - failed_before) == (1, 1)


class TestSending:
    async def test_a_completed_transfer_emails_both_customers(self, make_app: AppFactory) -> None:
        port = free_loopback_port()
        async with smtp_server(port) as mailbox:
            app = make_app(**email_settings(port))
            async with app_client(app) as client:
                await put_contact(client, "alice", "alice@example.test")
                await put_contact(client, "bob", "bob@example.test")
                event = transfer_event(amount_minor=2550, currency="EUR")
                assert (
                    await client.post("/v1/events", json=event, headers=as_worker())
                ).status_code == 201
                assert await dispatcher_of(app).run_once() == 2
                await wait_until(lambda: len(mailbox.messages) == 2, what="two emails")
                rows = await stored_emails(app)
        data = event["data"]
        to_alice = mailbox.to("alice@example.test")
        assert to_alice["From"] == "Sagabank <noreply@sagabank.test>"
        assert to_alice["Subject"] == "Your transfer of 25.50 EUR has completed"
        body = to_alice.get_content()
        for fact in (data["transfer_id"], data["source_account_id"], data["target_account_id"]):
            assert fact in body
        assert "25.50 EUR" in body
        assert mailbox.to("bob@example.test")["Subject"] == "You received 25.50 EUR"
        assert sorted(recipients[0] for recipients in mailbox.recipients) == [
            "alice@example.test",
            "bob@example.test",
        ]
        assert {row.status for row in rows} == {"sent"}
        assert to_alice["Message-ID"] == f"<{rows[0].id}@notifications.sagabank>"

    async def test_only_outcomes_are_emailed_and_only_to_the_sender(
        self, make_app: AppFactory
    ) -> None:
        port = free_loopback_port()
        app = make_app(**email_settings(port))
        async with app_client(app) as client:
            await put_contact(client, "alice", "alice@example.test")
            await put_contact(client, "bob", "bob@example.test")
            for event_type in ("transfer.created", "transfer.in_review", "transfer.declined"):
                body = transfer_event(event_type)
                assert (
                    await client.post("/v1/events", json=body, headers=as_worker())
                ).status_code == 201
            rows = await stored_emails(app)
        assert [(row.recipient, row.subject) for row in rows] == [
            ("alice@example.test", "Your transfer of 25.50 EUR was declined")
        ]

    async def test_no_contact_no_email(self, make_app: AppFactory) -> None:
        app = make_app(**email_settings(free_loopback_port()))
        async with app_client(app) as client:
            assert (
                await client.post("/v1/events", json=transfer_event(), headers=as_worker())
            ).status_code == 201
            assert await stored_emails(app) == []

    async def test_without_an_smtp_server_no_email_is_composed(self, make_app: AppFactory) -> None:
        app = make_app(dispatcher_enabled=False)
        async with app_client(app) as client:
            await put_contact(client, "alice", "alice@example.test")
            assert (
                await client.post("/v1/events", json=transfer_event(), headers=as_worker())
            ).status_code == 201
            assert await stored_emails(app) == []

    async def test_an_smtp_outage_is_retried_and_nothing_is_lost(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        port = free_loopback_port()
        app = make_app(**email_settings(port))
        async with app_client(app) as client:
            await put_contact(client, "alice", "alice@example.test")
            event = transfer_event(target_customer_id=None)
            assert (
                await client.post("/v1/events", json=event, headers=as_worker())
            ).status_code == 201
            assert await dispatcher_of(app).run_once() == 1  # nobody listens on the port
            [pending] = await stored_emails(app)
            assert pending.status == "pending"
            assert pending.last_error
            async with smtp_server(port) as mailbox:
                assert await dispatcher_of(app).run_once() == 0, "not before the retry is due"
                clock.advance(6)
                assert await dispatcher_of(app).run_once() == 1
                await wait_until(lambda: len(mailbox.messages) == 1, what="the email")
            [sent] = await stored_emails(app)
        assert sent.status == "sent"
        assert sent.attempts_made == 2
        assert event["data"]["transfer_id"] in mailbox.messages[0].get_content()

    async def test_a_message_whose_send_never_finishes_ends_failed(
        self, make_app: AppFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The send kills its sender every time: claimed, never recorded, lease after lease."""
        sends: list[str] = []

        async def dies(server: mail.SmtpServer, message: EmailMessage) -> None:
            sends.append(str(message["Message-ID"]))
            raise SenderDied("the message killed its sender")

        monkeypatch.setattr(mail, "send", dies)
        app = make_app(**email_settings(free_loopback_port()))
        async with app_client(app) as client:
            await put_contact(client, "alice", "alice@example.test")
            event = transfer_event(target_customer_id=None)
            assert (
                await client.post("/v1/events", json=event, headers=as_worker())
            ).status_code == 201
            # Bounded: a dispatcher that never gives up ends here too, and fails below.
            for _ in range(2 * (EMAIL_ATTEMPTS_MAX + 5)):
                await dispatcher_of(app).run_once()
                clock.advance(27 * 3600)  # beyond the lease and the longest retry wait
            [message] = await stored_emails(app)
            due_afterwards = await dispatcher_of(app).run_once()
        assert message.status == "failed", f"{message.status} after {len(sends)} sends"
        assert due_afterwards == 0, "nothing is due any more"
        assert len(sends) == EMAIL_ATTEMPTS_MAX
        assert message.attempts_made == EMAIL_ATTEMPTS_MAX
        assert message.next_attempt_at is None
        assert message.lease_token is None
        assert message.last_error == "the attempt did not finish: its lease expired"
