"""The activities' HTTP mapping, against httpx.MockTransport: what is sent, how answers map."""

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from contracts.accounts import AccountsProblem
from contracts.common import REQUEST_DEADLINE_HEADER
from contracts.notifications import EventType
from contracts.transfers import StepRecord, TransferStatus, step_id, workflow_id
from kit.deadline import Deadline
from kit.http import create_client
from workflows.activities import HOLD_ATTEMPTS, TransferActivities
from workflows.models import EventPublication, HoldAction, OutcomeNotice, StepReport, StepsReport
from workflows.tests.saga import FAKE_TIME, new_transfer

TRANSFER = new_transfer()
TRANSFER_ID = TRANSFER.transfer_id
HOLD_ID = step_id(TRANSFER_ID, "hold")
RUN_ID = "0195f1c2-7a3b-7cde-8f01-23456789abcd"
Answer = Callable[[httpx.Request], httpx.Response]


def problem(status: int, slug: str, detail: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "type": f"urn:sagabank:problem:{slug}",
            "title": slug.replace("-", " ").capitalize(),
            "status": status,
            "detail": detail,
        },
        headers={"content-type": "application/problem+json"},
    )


def ledger_transfer(transfer_id: uuid.UUID, kind: str, pending_id: uuid.UUID | None) -> Any:
    return {
        "id": str(transfer_id),
        "kind": kind,
        "debit_account_id": str(TRANSFER.source_account_id),
        "credit_account_id": str(TRANSFER.target_account_id),
        "amount_minor": TRANSFER.amount_minor,
        "currency": TRANSFER.currency,
        "pending_id": str(pending_id) if pending_id else None,
        "timeout_seconds": None,
        "expires_at": None,
        "reference": f"transfer:{TRANSFER_ID}",
        "created_at": FAKE_TIME.isoformat(),
    }


class Services:
    """Four fake services behind one MockTransport; each test sets the next answer."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answer: Answer = lambda request: httpx.Response(500)
        transport = httpx.MockTransport(self._handle)
        self.activities = TransferActivities(
            accounts=create_client("http://accounts.test", transport=transport),
            transactions=create_client("http://transactions.test", transport=transport),
            fraud=create_client("http://fraud.test", transport=transport),
            notifications=create_client("http://notifications.test", transport=transport),
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def answer_json(self, status: int, body: Any) -> None:
        self.answer = lambda request: httpx.Response(status, json=body)

    @property
    def request(self) -> httpx.Request:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]

    def body(self) -> Any:
        return json.loads(self.request.content)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    fakes = Services()
    yield fakes
    await fakes.activities.aclose()


async def run(activity: Callable[..., Awaitable[Any]], argument: Any, *, attempt: int = 3) -> Any:
    """Run an activity as the worker would, inside an activity context of this transfer."""
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info,
        workflow_id=workflow_id(TRANSFER_ID),
        workflow_run_id=RUN_ID,
        activity_type=activity.__name__,
        attempt=attempt,
    )
    return await environment.run(activity, argument)


async def failure_of(
    activity: Callable[..., Awaitable[Any]], argument: Any, *, attempt: int = 3
) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await run(activity, argument, attempt=attempt)
    return raised.value


class TestValidateTransfer:
    async def test_valid(self, services: Services) -> None:
        services.answer_json(200, {"transfer_id": str(TRANSFER_ID), "valid": True})
        validation = await run(services.activities.validate_transfer, TRANSFER)
        assert validation.valid is True
        request = services.request
        assert request.method == "POST"
        assert str(request.url) == "http://accounts.test/v1/ledger/validations"
        assert services.body() == {
            "transfer_id": str(TRANSFER_ID),
            "source_account_id": str(TRANSFER.source_account_id),
            "target_account_id": str(TRANSFER.target_account_id),
            "amount_minor": 125_000,
            "currency": "EUR",
        }
        # Traceable across services: the workflow, the activity and its attempt.
        assert request.headers["x-request-id"] == f"transfer-{TRANSFER_ID}:validate_transfer:3"

    async def test_problem_is_a_final_business_failure(self, services: Services) -> None:
        services.answer = lambda request: problem(404, "account-not-found", "no such account")
        error = await failure_of(services.activities.validate_transfer, TRANSFER)
        assert error.type == "account-not-found"
        assert error.message == "no such account"
        assert error.non_retryable is True

    async def test_not_valid_is_a_final_business_failure(self, services: Services) -> None:
        services.answer_json(200, {"transfer_id": str(TRANSFER_ID), "valid": False})
        error = await failure_of(services.activities.validate_transfer, TRANSFER)
        assert error.type == "transfer-invalid"
        assert error.non_retryable is True


class TestPlaceHold:
    async def test_valid(self, services: Services) -> None:
        services.answer_json(201, ledger_transfer(HOLD_ID, "pending", None))
        hold = await run(services.activities.place_hold, TRANSFER)
        assert hold.id == HOLD_ID
        assert str(services.request.url) == "http://accounts.test/v1/ledger/transfers"
        assert services.body() == {
            "id": str(HOLD_ID),
            "kind": "pending",
            "debit_account_id": str(TRANSFER.source_account_id),
            "credit_account_id": str(TRANSFER.target_account_id),
            "amount_minor": 125_000,
            "currency": "EUR",
            "reference": f"transfer:{TRANSFER_ID}",
        }

    async def test_replay_answer_is_the_hold(self, services: Services) -> None:
        services.answer_json(200, ledger_transfer(HOLD_ID, "pending", None))
        assert (await run(services.activities.place_hold, TRANSFER)).id == HOLD_ID

    async def test_every_attempt_sends_the_same_hold(self, services: Services) -> None:
        services.answer_json(201, ledger_transfer(HOLD_ID, "pending", None))
        await run(services.activities.place_hold, TRANSFER)
        await run(services.activities.place_hold, TRANSFER)
        first, second = services.requests
        assert first.content == second.content

    async def test_insufficient_funds(self, services: Services) -> None:
        services.answer = lambda request: problem(409, "insufficient-funds", "available 10")
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert (error.type, error.message, error.non_retryable) == (
            "insufficient-funds",
            "available 10",
            True,
        )

    async def test_server_error_is_retryable(self, services: Services) -> None:
        services.answer = lambda request: problem(503, "service-unavailable", "try later")
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert error.type == "service-unavailable"
        assert error.non_retryable is False

    async def test_error_without_problem_body_is_retryable(self, services: Services) -> None:
        services.answer = lambda request: httpx.Response(502, text="<html>bad gateway</html>")
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert error.type == "http-502"
        assert error.non_retryable is False

    async def test_too_many_requests_waits_as_told(self, services: Services) -> None:
        services.answer = lambda request: httpx.Response(
            429, json={"title": "Too many requests", "status": 429}, headers={"Retry-After": "7"}
        )
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert error.type == "http-429"
        assert error.non_retryable is False
        assert error.next_retry_delay == timedelta(seconds=7)

    async def test_timeout_is_retryable(self, services: Services) -> None:
        def time_out(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("no answer", request=request)

        services.answer = time_out
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert error.type == "timeout"
        assert error.non_retryable is False

    async def test_connection_error_is_retryable(self, services: Services) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        services.answer = refuse
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert error.type == "connection-error"
        assert error.non_retryable is False

    async def test_unreadable_success_is_retryable(self, services: Services) -> None:
        # The hold may exist; asking again (same id) is safe, giving up is not.
        services.answer_json(201, {"id": str(HOLD_ID)})
        error = await failure_of(services.activities.place_hold, TRANSFER)
        assert error.type == "invalid-response"
        assert error.non_retryable is False


class TestHoldSafety:
    """What keeps a hold from outliving its transfer, on the wire."""

    async def test_the_hold_carries_its_deadline(self, services: Services) -> None:
        services.answer_json(201, ledger_transfer(HOLD_ID, "pending", None))
        transfer = TRANSFER.model_copy(update={"hold_timeout_seconds": 90_000})
        await run(services.activities.place_hold, transfer)
        assert services.body()["timeout_seconds"] == 90_000

    async def test_a_refusal_after_earlier_attempts_names_them(self, services: Services) -> None:
        services.answer = lambda request: problem(409, "insufficient-funds", "available 10")
        error = await failure_of(services.activities.place_hold, TRANSFER, attempt=3)
        assert (error.type, error.non_retryable) == ("insufficient-funds", True)
        assert error.details == ({HOLD_ATTEMPTS: 3},)

    async def test_a_first_refusal_names_none(self, services: Services) -> None:
        services.answer = lambda request: problem(409, "insufficient-funds", "available 10")
        error = await failure_of(services.activities.place_hold, TRANSFER, attempt=1)
        assert error.details == ()

    async def test_the_void_names_the_hold_so_the_ledger_can_void_it_unseen(
        self, services: Services
    ) -> None:
        void_id = step_id(TRANSFER_ID, "void")
        services.answer_json(201, ledger_transfer(void_id, "void_pending", HOLD_ID))
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID, transfer=TRANSFER)
        await run(services.activities.void_hold, action)
        assert services.body() == {
            "id": str(void_id),
            "kind": "void_pending",
            "pending_id": str(HOLD_ID),
            "debit_account_id": str(TRANSFER.source_account_id),
            "credit_account_id": str(TRANSFER.target_account_id),
            "amount_minor": 125_000,
            "currency": "EUR",
            "reference": f"transfer:{TRANSFER_ID}",
        }

    async def test_a_hold_released_by_its_expiry_needs_no_void(self, services: Services) -> None:
        services.answer = lambda request: problem(
            409, AccountsProblem.pending_transfer_expired, "expired"
        )
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID, transfer=TRANSFER)
        assert await run(services.activities.void_hold, action) is None

    async def test_an_expired_hold_is_a_final_answer_to_the_post(self, services: Services) -> None:
        services.answer = lambda request: problem(
            409, AccountsProblem.pending_transfer_expired, "expired"
        )
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID)
        error = await failure_of(services.activities.post_hold, action)
        assert (error.type, error.non_retryable) == (AccountsProblem.pending_transfer_expired, True)

    async def test_every_request_carries_its_deadline(self, services: Services) -> None:
        services.answer_json(201, ledger_transfer(HOLD_ID, "pending", None))
        before = time.time()
        await run(services.activities.place_hold, TRANSFER)
        deadline = Deadline.parse(services.request.headers[REQUEST_DEADLINE_HEADER])
        # The clients' timeout (kit.http's default, 10 s) from the moment it was sent.
        assert before + 10 - 0.01 <= deadline.at_epoch_seconds <= time.time() + 10 + 0.01

    async def test_an_answer_too_slow_in_all_times_out(self) -> None:
        """httpx's read timeout bounds each wait for bytes; the request as a whole is
        bounded too, so the deadline the service was told is never passed unnoticed."""

        async def trickle(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return httpx.Response(201)

        accounts = create_client(
            "http://accounts.test", timeout_seconds=0.2, transport=httpx.MockTransport(trickle)
        )
        other = create_client("http://other.test", transport=httpx.MockTransport(trickle))
        activities = TransferActivities(
            accounts=accounts, transactions=other, fraud=other, notifications=other
        )
        try:
            error = await failure_of(activities.place_hold, TRANSFER)
        finally:
            await activities.aclose()
        assert (error.type, error.non_retryable) == ("timeout", False)


class TestScoreTransfer:
    async def test_valid(self, services: Services) -> None:
        services.answer_json(
            201,
            {
                "transfer_id": str(TRANSFER_ID),
                "score": 540,
                "decision": "review",
                "reasons": [{"code": "new_payee", "text": "First transfer", "points": 540}],
                "ruleset_version": "2026-01",
                "created_at": FAKE_TIME.isoformat(),
            },
        )
        score = await run(services.activities.score_transfer, TRANSFER)
        assert score.decision == "review"
        assert str(services.request.url) == "http://fraud.test/v1/scores"
        assert services.body() == {
            "transfer_id": str(TRANSFER_ID),
            "source_account_id": str(TRANSFER.source_account_id),
            "target_account_id": str(TRANSFER.target_account_id),
            "amount_minor": 125_000,
            "currency": "EUR",
        }

    async def test_malformed_request_is_final(self, services: Services) -> None:
        services.answer = lambda request: problem(422, "invalid-request", "bad body")
        error = await failure_of(services.activities.score_transfer, TRANSFER)
        assert (error.type, error.non_retryable) == ("invalid-request", True)


class TestPostHold:
    async def test_valid(self, services: Services) -> None:
        posting_id = step_id(TRANSFER_ID, "post")
        services.answer_json(201, ledger_transfer(posting_id, "post_pending", HOLD_ID))
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID)
        posting = await run(services.activities.post_hold, action)
        assert posting.id == posting_id
        assert str(services.request.url) == "http://accounts.test/v1/ledger/transfers"
        assert services.body() == {
            "id": str(posting_id),
            "kind": "post_pending",
            "pending_id": str(HOLD_ID),
            "reference": f"transfer:{TRANSFER_ID}",
        }

    async def test_refusal_is_retried_because_the_pivot_never_gives_up(
        self, services: Services
    ) -> None:
        services.answer = lambda request: problem(409, "account-not-active", "frozen")
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID)
        error = await failure_of(services.activities.post_hold, action)
        assert (error.type, error.non_retryable) == ("account-not-active", False)


class TestVoidHold:
    async def test_valid(self, services: Services) -> None:
        void_id = step_id(TRANSFER_ID, "void")
        services.answer_json(201, ledger_transfer(void_id, "void_pending", HOLD_ID))
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID)
        assert await run(services.activities.void_hold, action) is None
        assert services.body() == {
            "id": str(void_id),
            "kind": "void_pending",
            "pending_id": str(HOLD_ID),
            "reference": f"transfer:{TRANSFER_ID}",
        }

    async def test_refusal_is_retried_because_compensation_never_gives_up(
        self, services: Services
    ) -> None:
        services.answer = lambda request: problem(409, "pending-transfer-already-posted", "x")
        action = HoldAction(transfer_id=TRANSFER_ID, hold_id=HOLD_ID)
        error = await failure_of(services.activities.void_hold, action)
        assert (error.type, error.non_retryable) == ("pending-transfer-already-posted", False)


class TestPublishEvent:
    publication = EventPublication(
        transfer=TRANSFER,
        type=EventType.transfer_declined,
        status=TransferStatus.declined,
        occurred_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        failure_reason="review-rejected",
    )

    async def test_valid(self, services: Services) -> None:
        event_id = step_id(TRANSFER_ID, "event:transfer.declined")
        services.answer = lambda request: httpx.Response(
            201, json={**json.loads(request.content), "received_at": FAKE_TIME.isoformat()}
        )
        assert await run(services.activities.publish_event, self.publication) is None
        assert str(services.request.url) == "http://notifications.test/v1/events"
        assert services.body() == {
            "id": str(event_id),
            "type": "transfer.declined",
            "timestamp": "2026-03-04T05:06:07Z",
            "data": {
                "transfer_id": str(TRANSFER_ID),
                "status": "declined",
                "amount_minor": 125_000,
                "currency": "EUR",
                "source_account_id": str(TRANSFER.source_account_id),
                "target_account_id": str(TRANSFER.target_account_id),
                "failure_reason": "review-rejected",
            },
        }

    async def test_routes_to_the_customers_it_knows(self, services: Services) -> None:
        services.answer_json(201, {})
        publication = self.publication.model_copy(
            update={"source_customer_id": "customer-a", "target_customer_id": "customer-b"}
        )
        await run(services.activities.publish_event, publication)
        data = services.body()["data"]
        assert (data["source_customer_id"], data["target_customer_id"]) == (
            "customer-a",
            "customer-b",
        )

    async def test_unknown_customers_are_left_out(self, services: Services) -> None:
        services.answer_json(201, {})
        publication = self.publication.model_copy(update={"source_customer_id": "customer-a"})
        await run(services.activities.publish_event, publication)
        data = services.body()["data"]
        assert data["source_customer_id"] == "customer-a"
        assert "target_customer_id" not in data

    async def test_event_id_reused_is_final(self, services: Services) -> None:
        services.answer = lambda request: problem(409, "event-id-reused", "other content")
        error = await failure_of(services.activities.publish_event, self.publication)
        assert (error.type, error.non_retryable) == ("event-id-reused", True)


class TestRecordStep:
    report = StepReport(
        transfer_id=TRANSFER_ID,
        record=StepRecord(
            step="hold",
            outcome="succeeded",
            status=TransferStatus.pending,
            version=2,
            occurred_at=FAKE_TIME,
            hold_id=HOLD_ID,
        ),
    )

    async def test_valid(self, services: Services) -> None:
        services.answer_json(
            200,
            {
                "id": str(TRANSFER_ID),
                "workflow_id": workflow_id(TRANSFER_ID),
                "status": "pending",
                "source_account_id": str(TRANSFER.source_account_id),
                "target_account_id": str(TRANSFER.target_account_id),
                "amount_minor": 125_000,
                "currency": "EUR",
                "description": None,
                "metadata": {},
                "steps": [],
                "fraud": None,
                "hold_id": str(HOLD_ID),
                "posting_id": None,
                "failure_reason": None,
                "created_at": FAKE_TIME.isoformat(),
                "updated_at": FAKE_TIME.isoformat(),
            },
        )
        # The saga needs only the status line; the projection in the body stays unread.
        assert await run(services.activities.record_step, self.report) is None
        assert str(services.request.url) == (
            f"http://transactions.test/v1/internal/transfers/{TRANSFER_ID}/steps"
        )
        assert services.body() == {
            "step": "hold",
            "outcome": "succeeded",
            "status": "pending",
            "version": 2,
            "occurred_at": "2026-01-02T03:04:05Z",
            "hold_id": str(HOLD_ID),
            # The execution that took the step, for the audit trail.
            "workflow_id": workflow_id(TRANSFER_ID),
            "run_id": RUN_ID,
        }

    async def test_compensation_names_the_step_it_undoes(self, services: Services) -> None:
        services.answer_json(200, {})
        record = self.report.record.model_copy(
            update={"step": "void", "version": 4, "compensates_step": "hold"}
        )
        await run(
            services.activities.record_step,
            StepReport(transfer_id=TRANSFER_ID, record=record),
        )
        assert services.body()["compensates_step"] == "hold"
        assert services.body()["run_id"] == RUN_ID

    async def test_unknown_transfer_is_final(self, services: Services) -> None:
        services.answer = lambda request: problem(404, "transfer-not-found", "no transfer")
        error = await failure_of(services.activities.record_step, self.report)
        assert (error.type, error.non_retryable) == ("transfer-not-found", True)


class TestRecordSteps:
    async def test_valid(self, services: Services) -> None:
        services.answer_json(200, {"id": str(TRANSFER_ID), "status": "pending"})
        hold = TestRecordStep.report.record
        validate = hold.model_copy(update={"step": "validate", "version": 1, "hold_id": None})
        report = StepsReport(transfer_id=TRANSFER_ID, records=[validate, hold])
        assert await run(services.activities.record_steps, report) is None
        assert str(services.request.url) == (
            f"http://transactions.test/v1/internal/transfers/{TRANSFER_ID}/steps/batch"
        )
        # Each record names the execution that took it, in the order the saga took them.
        execution = {"workflow_id": workflow_id(TRANSFER_ID), "run_id": RUN_ID}
        assert services.body() == {
            "records": [
                {
                    "step": "validate",
                    "outcome": "succeeded",
                    "status": "pending",
                    "version": 1,
                    "occurred_at": "2026-01-02T03:04:05Z",
                    **execution,
                },
                {
                    "step": "hold",
                    "outcome": "succeeded",
                    "status": "pending",
                    "version": 2,
                    "occurred_at": "2026-01-02T03:04:05Z",
                    "hold_id": str(HOLD_ID),
                    **execution,
                },
            ]
        }

    async def test_refused_report_is_final(self, services: Services) -> None:
        services.answer = lambda request: problem(422, "invalid-request", "versions increase")
        report = StepsReport(transfer_id=TRANSFER_ID, records=[TestRecordStep.report.record])
        error = await failure_of(services.activities.record_steps, report)
        assert (error.type, error.non_retryable) == ("invalid-request", True)


class TestReportOutcome:
    notice = OutcomeNotice(
        transfer=TRANSFER,
        final_status=TransferStatus.completed,
        review_decision="approve",
        occurred_at=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    )

    async def test_valid(self, services: Services) -> None:
        services.answer_json(201, {"transfer_id": str(TRANSFER_ID)})
        assert await run(services.activities.report_outcome, self.notice) is None
        assert str(services.request.url) == "http://fraud.test/v1/outcomes"
        assert services.request.headers["X-Request-ID"] == (
            f"{workflow_id(TRANSFER_ID)}:report_outcome:3"
        )
        assert services.body() == {
            "transfer_id": str(TRANSFER_ID),
            "source_account_id": str(TRANSFER.source_account_id),
            "target_account_id": str(TRANSFER.target_account_id),
            "amount_minor": 125_000,
            "currency": "EUR",
            "final_status": "completed",
            "review_decision": "approve",
            "occurred_at": "2026-03-04T05:06:07Z",
        }

    async def test_replayed_report_is_a_success(self, services: Services) -> None:
        services.answer_json(200, {"transfer_id": str(TRANSFER_ID)})
        assert await run(services.activities.report_outcome, self.notice) is None

    async def test_server_error_is_retryable(self, services: Services) -> None:
        services.answer = lambda request: httpx.Response(503)
        error = await failure_of(services.activities.report_outcome, self.notice)
        assert (error.type, error.non_retryable) == ("http-503", False)

    async def test_report_the_contract_refuses_is_final_and_sends_nothing(
        self, services: Services
    ) -> None:
        notice = self.notice.model_copy(
            update={"transfer": TRANSFER.model_copy(update={"currency": "euro"})}
        )
        error = await failure_of(services.activities.report_outcome, notice)
        assert (error.type, error.non_retryable) == ("invalid-request", True)
        assert services.requests == []


class TestRequestsInFlight:
    async def test_each_service_gets_at_most_the_limit_at_once(self) -> None:
        in_flight = 0
        most = 0
        arrived = asyncio.Event()

        async def answer(request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            if most == 2:
                arrived.set()
            await asyncio.sleep(0.01)
            in_flight -= 1
            return httpx.Response(200, json={})

        transport = httpx.MockTransport(answer)
        activities = TransferActivities(
            accounts=create_client("http://accounts.test", transport=transport),
            transactions=create_client("http://transactions.test", transport=transport),
            fraud=create_client("http://fraud.test", transport=transport),
            notifications=create_client("http://notifications.test", transport=transport),
            requests_in_flight_max=2,
        )
        try:
            reports = [
                TestRecordStep.report.model_copy(update={"transfer_id": uuid.uuid4()})
                for _ in range(10)
            ]
            await asyncio.gather(*(run(activities.record_step, report) for report in reports))
        finally:
            await activities.aclose()
        assert arrived.is_set()
        assert most == 2
